"""Turn decided steps into a contract-exact :class:`~fleet.plan.Plan` (``contracts/plan.md``).

steps (in execution order) -> costs per move (replayed on a fresh state, so each move is priced
from where the container really is at that point) -> waves and ``after`` -> before/after usage per
node -> score with the proven lower bound. Figures are rounded so the JSON is short and stable.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Collection

from fleet.plan import Goal, Move, Plan, Predicted, Score, Unplaced, Usage
from fleet.snapshot import inventory_digest
from planners.bounds import lower_bound_peak
from planners.costs import plan_sharing, predict
from planners.state import FleetState, Placement
from planners.units import Unit
from planners.waves import Step, assign_waves


def _r(x: float) -> float:
    return round(x, 4)


def usage(state: FleetState) -> dict[str, Usage]:
    """Memory (configured/RAM), CPU (measured use/CPUs) and disk (used/size) fraction per node."""
    out: dict[str, Usage] = {}
    for name, node in state.nodes.items():
        total = sum(s.total_gb for s in node.storage.values())
        used = sum(state.disk[(name, sid)] for sid in node.storage)
        out[name] = Usage(
            memory=_r(state.mem[name] / node.memory_mb),
            cpu=_r(min(1.0, max(0.0, state.cpu_used[name] / node.cpus))),
            disk=_r(used / total) if total > 0 else 0.0,
        )
    return out


def _price(state: FleetState, steps: list[Step]) -> list[Move]:
    policy = state.policy
    moves = []
    out_of = Counter(s.src for s in steps)
    for s in steps:
        here = state.where[s.ct]
        copied = state.copies_disk(here, Placement(s.dst, s.storage))
        cost = predict(state.containers[s.ct], state.nodes[s.src], state.nodes[s.dst], policy, copied,
                       sharing=plan_sharing(policy, out_of[s.src]))
        extra = {"target_storage": s.storage} if s.storage is not None else {}
        moves.append(Move.model_validate({
            "ct": s.ct, "from": s.src, "to": s.dst, "method": cost.method,
            "predicted": Predicted(duration_s=cost.duration_s, downtime_s=cost.downtime_s,
                                   bytes=cost.bytes),
            "reason": s.reason, **extra,
        }))
        state.apply(s.ct, s.dst, s.storage)
    return moves


def spread(state: FleetState, emptying: Collection[str]) -> float:
    """Population standard deviation of memory utilisation over online nodes not being emptied."""
    utils = [state.mem_util(n) for n, node in state.nodes.items() if node.online and n not in emptying]
    return statistics.pstdev(utils) if len(utils) > 1 else 0.0


def build_plan(start: FleetState, goal: Goal, steps: list[Step], unplaced: list[Unplaced], *,
               movable: Collection[str], units: list[Unit], emptying: Collection[str] = ()) -> Plan:
    """Assemble the plan from the state *before* any step (left unchanged).

    ``movable``/``units`` define the class of plans the lower bound covers.
    """
    before = usage(start)
    lb = lower_bound_peak(start, movable, units, emptying)
    priced = dict(zip((id(s) for s in steps), _price(start.clone(), steps), strict=True))
    end = start.clone()
    for s in steps:
        end.apply(s.ct, s.dst, s.storage)
    moves = []
    for step in assign_waves(start, steps):
        move = priced[id(step)]
        move.wave, move.after = step.wave, step.after
        moves.append(move)
    wave_time: dict[int, float] = {}
    for m in moves:
        wave_time[m.wave] = max(wave_time.get(m.wave, 0.0), m.predicted.duration_s)
    peak = max((end.mem_util(n) for n in end.nodes), default=0.0)
    score = Score(
        peak_memory=_r(peak),
        spread=_r(spread(end, emptying)),
        lower_bound_peak_memory=math.floor(lb * 10000) / 10000,
        moves=len(moves),
        bytes=sum(m.predicted.bytes for m in moves),
        predicted_makespan_s=round(sum(wave_time.values()), 3),
    )
    return Plan(goal=goal, inventory_digest=inventory_digest(start.inv), moves=moves, unplaced=unplaced,
                before=before, after=usage(end), score=score)
