"""check_plan: every hard-rule violation of a plan, in every intermediate state.

The engine runs it to re-validate a saved plan against a fresh inventory before executing it, and
the tests run it on every plan. It replays the moves in order on a :class:`FleetState` and, before
each one, asks every registered rule (:mod:`planners.rules`: its plan check, else the filter
placement uses, applied to the single container) whether the destination accepts it; then it
checks what the order cannot show: waves (concurrency limits, every interleaving of a wave safe),
``after`` references, the rules' end-state checks (affinity groups ending together), and, for
evacuate/drain, that every container on the nodes is accounted for.
"""

from __future__ import annotations

from fleet.model import Inventory
from fleet.plan import Move, Plan
from fleet.policy import Policy
from fleet.rules import effective_rules
from planners.rules import RULES
from planners.state import FleetState
from planners.units import build_unit
from planners.waves import Step, arrivals_fit


def target_storage(state: FleetState, move: Move) -> str | None:
    """The storage a move puts the disk on: its ``target_storage``, else the same storage id."""
    if move.target_storage is not None:
        return move.target_storage
    return state.where[move.ct].storage


def _move_problem(state: FleetState, move: Move) -> str | None:
    if move.ct not in state.containers:
        return f"no container {move.ct}"
    if move.to not in state.nodes or move.from_node not in state.nodes:
        return f"no node {move.to if move.to not in state.nodes else move.from_node}"
    here = state.where[move.ct].node
    if here != move.from_node:
        return f"{move.ct} is on {here}, not {move.from_node}"
    if move.to == here:
        return f"{move.ct} is already on {here}"
    if state.rules.immovable(move.ct):
        return f"{move.ct} is pinned or ignored and never moves"
    return RULES.move_problem(state, build_unit(state, [move.ct]), move.to, target_storage(state, move))


def _wave_problems(inv: Inventory, plan: Plan, policy: Policy) -> list[str]:
    out: list[str] = []
    state = FleetState(inv, policy)
    seen_wave: dict[str, int] = {}
    by_wave: dict[int, list[Move]] = {}
    previous = 0
    for i, m in enumerate(plan.moves):
        if m.wave < previous:
            out.append(f"move {i} ({m.ct}): wave {m.wave} after wave {previous}; moves must be in wave order")
        previous = max(previous, m.wave)
        for dep in m.after:
            if dep not in seen_wave or seen_wave[dep] >= m.wave:
                out.append(f"move {i} ({m.ct}): after {dep}, which is not a move of an earlier wave")
        by_wave.setdefault(m.wave, []).append(m)
        seen_wave[m.ct] = m.wave
    if out or any(m.ct not in state.containers for m in plan.moves):
        return out
    for wave in sorted(by_wave):
        moves = by_wave[wave]
        out.extend(_concurrency_problems(wave, moves, policy))
        steps = [Step(m.ct, m.from_node, m.to, target_storage(state, m), "") for m in moves]
        if not arrivals_fit(state, steps):
            out.append(f"wave {wave}: its moves are only safe in one order (a destination needs room "
                       "that a move of the same wave frees)")
        for s in steps:
            if state.where[s.ct].node == s.src and s.dst in state.nodes:
                state.apply(s.ct, s.dst, s.storage)
    return out


def _concurrency_problems(wave: int, moves: list[Move], policy: Policy) -> list[str]:
    out = []
    if len(moves) > policy.max_parallel:
        out.append(f"wave {wave}: {len(moves)} moves; max_parallel is {policy.max_parallel}")
    for attr, limit, what in (("from_node", policy.max_outgoing_per_node, "out of"),
                              ("to", policy.max_incoming_per_node, "into")):
        counts: dict[str, int] = {}
        for m in moves:
            counts[getattr(m, attr)] = counts.get(getattr(m, attr), 0) + 1
        for node, n in sorted(counts.items()):
            if n > limit:
                out.append(f"wave {wave}: {n} moves {what} {node}; the limit is {limit}")
    cts = [m.ct for m in moves]
    if len(set(cts)) != len(cts):
        out.append(f"wave {wave}: a container moves twice in one wave")
    return out


def _end_problems(inv: Inventory, plan: Plan, state: FleetState) -> list[str]:
    out = RULES.end_problems(state, {m.ct for m in plan.moves})
    if plan.goal.kind in ("evacuate", "drain"):
        unplaced = {u.ct for u in plan.unplaced}
        for c in inv.containers:
            if c.node in plan.goal.nodes and state.where[c.id].node in plan.goal.nodes \
                    and c.id not in unplaced:
                out.append(f"{c.id} stays on {state.where[c.id].node}: neither moved nor listed as unplaced")
    return out


def check_plan(inv: Inventory, plan: Plan, policy: Policy) -> list[str]:
    """Every hard-rule violation of ``plan`` against ``inv`` (empty list: the plan is valid)."""
    state = FleetState(inv, policy, effective_rules(inv))
    problems: list[str] = []
    for i, move in enumerate(plan.moves):
        why = _move_problem(state, move)
        if why is not None:
            problems.append(f"move {i} ({move.ct} {move.from_node}->{move.to}): {why}")
            continue
        state.apply(move.ct, move.to, target_storage(state, move))
    problems += _wave_problems(inv, plan, policy)
    problems += _end_problems(inv, plan, state)
    return problems
