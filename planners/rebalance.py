"""rebalance: fix rule violations and overloads, then spread load with as few, cheap moves as pay.

    snapshot --> violations (each rule's detector, planners.rules) --> fix moves (here)
                                                                                 |
    aggressiveness >= 2: balance moves (planners.balance): best single paying    v
        move, peak first; ejection chains (planners.chains) when single moves stall
                                                                                 |
    refine (planners.refine): local search [+ CP-SAT with solver="cp-sat"], re-sequenced,
    kept only if complete, within budget and better                              |
                                                          steps (in a safe order)

    up to 2,000 containers, a second plan puts the peak first: fixes, the lowest level reachable
    within the budget (planners.peak), then the same balance and refinement capped at that level;
    it wins when its peak is lower by MIN_PEAK_GAIN and its moves pay the threshold on average.

The run's bookkeeping (state, units, what moved, budget) is :class:`planners.rebalance_run.
RebalanceRun`; cooldown is :mod:`planners.cooldown`; move prices :mod:`planners.pricing`.

Every greedy move is decided on the state left by the moves before it, so the decision order is
an execution order in which every prefix keeps the rules; refined plans are re-sequenced. A unit
moves at most once per plan and not at all while cooling down (moved within
``policy.cooldown_hours``), and a balance move must gain more than ``policy.min_gain`` times the aggressiveness factor *after* paying its copy and downtime
cost (a chain: times the number of its moves). Every accepted move or chain lowers the
objective, so repeated runs never return to an earlier placement; on a balanced fleet a second
run plans nothing, so plans never ping-pong.

Aggressiveness (like VMware DRS): 1 = only fix violations and overloads; 2..5 accept balance moves
whose gain is at least 2, 1, 1/2, 1/4 x ``min_gain``. Gain is the drop of the objective
(:mod:`planners.objective`; moving 3 % of a node's RAM from a node at 80 % to an equal one at
50 % gains 2 x 0.03 x 0.30 - 2 x 0.03^2 = 0.016).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from fleet.errors import InputError
from fleet.model import Inventory
from fleet.plan import Goal, Plan
from fleet.policy import Policy
from planners.assemble import build_plan
from planners.balance import balance
from planners.cooldown import cooling
from planners.peak import MAX_CONTAINERS, MIN_PEAK_GAIN, fleet_peak, lowest_peak
from planners.ranking import best
from planners.rebalance_run import RebalanceRun
from planners.refine import plan_value, refine_exact, refine_local
from planners.state import EPS, FleetState
from planners.units import Unit
from planners.violations import violations
from planners.waves import Step

#: Gain threshold per aggressiveness level, in multiples of policy.min_gain (None: fixes only).
THRESHOLD_FACTOR = {1: None, 2: 2.0, 3: 1.0, 4: 0.5, 5: 0.25}


def _harder(st: FleetState, unit: Unit, stuck: Unit) -> bool:
    """Whether lone container ``unit`` fails every filter ``stuck`` (a lone container with no
    anti-affinity that fits no node) failed: same node, storage and platform, no more allowed
    nodes, at least as much memory, CPU and disk. Each filter is then at least as strict for it."""
    a, b = st.containers[unit.key], st.containers[stuck.key]
    return (len(unit.members) == 1 and st.where[a.id] == st.where[b.id]
            and unit.platform == stuck.platform
            and (stuck.allowed is None or (unit.allowed is not None and unit.allowed <= stuck.allowed))
            and a.memory_mb >= b.memory_mb and a.cpus >= b.cpus and a.disk_gb >= b.disk_gb)


def fix_violations(run: RebalanceRun) -> None:
    """Move each violating unit to its best node. A lone container that found no node makes
    every container that is harder to place (see :func:`_harder`) skip the search until the
    next move changes the state: an overloaded fleet can list thousands of them."""
    stuck: dict[str, list[Unit]] = {}  # home node -> lone containers that found no node
    st = run.state
    for unit, why in violations(st, run.units):
        # A hard-rule violation outranks the cooldown; pinned/ignored units still never move.
        if unit.immovable or unit.key in run.moved or len(unit.members) > run.room():
            continue
        homes = {st.where[ct].node for ct in unit.members}
        stay = homes.pop() if len(homes) == 1 else None
        if any(_harder(st, unit, other) for other in stuck.get(stay or "", ())):
            continue
        chosen, _ = best(run.ctx, unit, [n for n in run.targets if n != stay], explain=False)
        if chosen is not None:
            run.move(unit, chosen.node, chosen.storages, f"fix: {why}")
            stuck.clear()
        elif stay is not None and len(unit.members) == 1 and not st.anti_groups_of.get(unit.key):
            stuck.setdefault(stay, []).append(unit)


def _refined(run: RebalanceRun, after_fixes: FleetState, fixes: list[Step], solver: str,
             time_limit_s: float) -> list[Step]:
    """The balance moves after local search (and CP-SAT with ``solver="cp-sat"``), when better
    and, after a peak-first stage, not above its peak."""
    balance_steps = run.steps[len(fixes):]
    room = run.budget - len(fixes)
    fixed = {run.unit_of[s.ct].key for s in fixes}
    moved = [run.unit_of[ct] for ct in dict.fromkeys(s.ct for s in balance_steps)]
    movable = [u for u in run.units if not u.immovable and u.key not in fixed
               and not any(ct in run.cooling for ct in u.members)]
    cap = float("inf") if run.peak_cap is None else run.peak_cap + EPS
    better = refine_local(after_fixes, balance_steps, moved, movable, room, run.chain_reasons)
    if better is not None and end_peak(after_fixes, better) <= cap:
        balance_steps = better
    if solver == "cp-sat":
        free = [u for u in movable if len({after_fixes.where[ct].node for ct in u.members}) == 1]
        exact = refine_exact(after_fixes, balance_steps, free, room, time_limit_s)
        if exact is not None and end_peak(after_fixes, exact) <= cap:
            balance_steps = exact
    return balance_steps


def end_peak(start: FleetState, steps: list[Step]) -> float:
    """The fleet's memory peak after ``steps`` from ``start``."""
    state = start.clone()
    for s in steps:
        state.apply(s.ct, s.dst, s.storage)
    return fleet_peak(state)


def _run(inv: Inventory, policy: Policy, cool: set[str], solver: str, time_limit_s: float, *,
         peak_first: bool) -> RebalanceRun | None:
    """One rebalance: fixes, then (``peak_first``: the lowest peak within the budget, then)
    balance and refinement. None when the peak-first stage cannot lower the peak."""
    run = RebalanceRun(inv, policy, cool)
    fix_violations(run)
    after_fixes, fixes = run.state.clone(), list(run.steps)
    run.fix_count = len(fixes)
    if THRESHOLD_FACTOR[policy.aggressiveness] is None:
        return None if peak_first else run
    if peak_first:
        found = lowest_peak(run)
        if found is None:
            return None
        for unit, dst, storages in found.moves:
            run.move(unit, dst, storages, f"rebalance: lower the peak to {found.level:.1%}")
        run.peak_cap = found.level
    balance(run, threshold(policy))
    run.steps = fixes + _refined(run, after_fixes, fixes, solver, time_limit_s)
    return run


def threshold(policy: Policy) -> float:
    """The gain a balance move must bring after its price (module docstring)."""
    return max(policy.min_gain * (THRESHOLD_FACTOR[policy.aggressiveness] or 0.0), 1e-9)


def _peak_wins(greedy: RebalanceRun, peaked: RebalanceRun, policy: Policy) -> bool:
    """Whether the peak-first plan lowers the peak by :data:`MIN_PEAK_GAIN` or more and still pays
    the threshold per move on average (so repeated runs converge: peak and objective both fall)."""
    start, fixes = peaked.start, peaked.steps[:peaked.fix_count]
    if end_peak(start, peaked.steps) > end_peak(start, greedy.steps) - MIN_PEAK_GAIN:
        return False
    gain = plan_value(start, fixes) - plan_value(start, peaked.steps)
    return gain >= threshold(policy) * (len(peaked.steps) - len(fixes))


def plan_rebalance(inv: Inventory, policy: Policy, *, last_moved: Mapping[str, datetime] | None = None,
                   now: datetime | None = None, solver: Literal["greedy", "cp-sat"] = "greedy",
                   time_limit_s: float = 10.0) -> Plan:
    """Fix violations, then balance memory (see module docstring).

    The greedy balance moves are then refined by local search (same units, better destinations,
    re-sequenced); ``solver="cp-sat"`` also asks CP-SAT for the best placement with the same move
    budget (deterministic time limit ``time_limit_s``; for small and medium fleets). On fleets of
    up to :data:`planners.peak.MAX_CONTAINERS` containers a second plan puts the peak first
    (:mod:`planners.peak`) and replaces the first when its peak is lower.
    """
    if solver not in ("greedy", "cp-sat"):
        raise InputError("solver", solver, "must be greedy or cp-sat")
    cool = cooling(inv, policy, last_moved, now)
    run = _run(inv, policy, cool, solver, time_limit_s, peak_first=False)
    assert run is not None
    if len(inv.containers) <= MAX_CONTAINERS:
        peaked = _run(inv, policy, cool, solver, time_limit_s, peak_first=True)
        if peaked is not None and _peak_wins(run, peaked, policy):
            run = peaked
    movable = {c.id for c in inv.containers
               if not run.rules.immovable(c.id) and c.id not in run.cooling}
    return build_plan(run.start, Goal(kind="rebalance"), run.steps, [],
                      movable=movable, units=[u for u in run.units if u.key in movable])
