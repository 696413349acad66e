"""Second opinions on a greedy rebalance: local search, or CP-SAT, then re-sequencing.

The greedy rebalance picks one best move at a time; a better *set* of moves of the same size
often exists (swap two destinations, send a unit elsewhere). Both refiners start from the state
after the mandatory fixes, propose an end placement for the balance moves, and hand it to
:func:`planners.sequence.sequence` for a safe order (parking if moves wait on each other). The
proposal replaces the greedy moves only when it is complete, within the move budget and better
on the objective (:mod:`planners.objective`, move costs included).

    after fixes --greedy--> steps A ----------------------------------+
         |                                                            v
         +--local search / CP-SAT--> end placement --sequence--> steps B --better?--> plan
"""

from __future__ import annotations

from collections.abc import Mapping

from planners.cpsat import check_size, solve
from planners.improve import TINY, Assignment, improve
from planners.objective import move_cost, node_term, priced, relocation_delta
from planners.ranking import Candidate, evaluate
from planners.rulebook import Ctx
from planners.rules import RULES
from planners.sequence import Target, sequence
from planners.state import FleetState, Placement
from planners.units import Unit
from planners.waves import Step

#: The replace neighbourhood re-examines every unit on the hottest nodes for each moving unit; it
#: runs for plans of up to this many moving units, at most REPLACE_PASSES times, to keep planning
#: time within its budget (see bench/planner_scale.py).
REPLACE_MAX_UNITS = 32
REPLACE_PASSES = 2
HOT_NODES = 4
COOL_NODES = 4
CHECKED = 8


def plan_value(start: FleetState, steps: list[Step]) -> float:
    """Objective of the end state reached by ``steps`` from ``start``, move costs included."""
    state = start.clone()
    cost = 0.0
    for s in steps:
        copied = state.copies_disk(state.where[s.ct], Placement(s.dst, s.storage))
        cost += priced(state, s.ct, s.src, s.dst, copied)
        state.apply(s.ct, s.dst, s.storage)
    return cost + sum(node_term(state, n, state.mem[n], state.cpu[n]) for n in state.nodes)


def _resequence(after_fixes: FleetState, proposal: list[Target], greedy: list[Step],
                room: int) -> list[Step] | None:
    ctx = Ctx(after_fixes.clone())
    steps, dropped = sequence(ctx, proposal, max_parks=max(0, room - len(proposal)))
    if dropped or len(steps) > room:
        return None
    if plan_value(after_fixes, steps) >= plan_value(after_fixes, greedy) - 1e-12:
        return None
    return steps


def _alternatives(st: FleetState, assigned: Assignment, movable: list[Unit]) -> list[tuple[float, str, str, Unit]]:
    """Single moves of units not yet moving, hottest sources to coolest nodes, best first."""
    by_heat = sorted(st.nodes, key=lambda n: (-st.mem_util(n), n))
    cool = [n for n in reversed(by_heat) if st.nodes[n].receives][:COOL_NODES]
    hot = set(by_heat[:HOT_NODES])
    ctx = Ctx(st)
    out = []
    for unit in movable:
        home = st.where[unit.key].node
        if unit.key in assigned.node_of or home not in hot:
            continue
        if any(st.where[ct].node != home for ct in unit.members):
            continue
        price = sum(move_cost(st, ct, st.where[ct], cool[0], st.where[ct].storage) for ct in unit.members)
        for dst in cool:
            if dst != home and RULES.may_land(ctx, unit, dst):
                out.append((relocation_delta(st, unit, home, dst) + price, unit.key, dst, unit))
    out.sort(key=lambda t: t[:3])
    return out


def _replace_pass(ctx: Ctx, assigned: Assignment, movable: list[Unit]) -> bool:
    """Give each moving unit's slot to an unmoved unit whose move gains more (same move count)."""
    st = assigned.state
    changed = False
    for a in assigned.units():
        dest = assigned.node_of[a.key]
        storages = assigned.lift(a)
        keep = relocation_delta(st, a, st.where[a.key].node, dest) + assigned.cost(a, dest)
        for delta, _, dst, b in _alternatives(st, assigned, movable)[:CHECKED]:
            if delta >= keep - TINY or len(b.members) > len(a.members):
                continue
            result = evaluate(ctx, b, dst)
            if isinstance(result, Candidate):
                assigned.drop(a)
                assigned.origin.update({ct: st.where[ct] for ct in b.members})
                assigned.place(b, dst, result.storages)
                changed = True
                break
        else:
            assigned.place(a, dest, storages)
    return changed


def _reason(key: str, reasons: Mapping[str, tuple[str, tuple[str, ...]]], before: dict[str, str],
            after: dict[str, str]) -> str:
    why, chain = reasons.get(key, ("", ()))
    if why and all(k in after and after[k] == before.get(k) for k in chain):
        return why
    return "rebalance (refined)"


def refine_local(after_fixes: FleetState, greedy: list[Step], units: list[Unit], movable: list[Unit],
                 room: int, reasons: Mapping[str, tuple[str, tuple[str, ...]]] | None = None) -> list[Step] | None:
    """Local search over the greedily moved ``units``: relocate, swap, and (for up to
    :data:`REPLACE_MAX_UNITS` units) hand a move's slot to another of the ``movable`` units.
    Returns better steps, or None.

    ``reasons`` maps a unit key to its greedy reason and the units that reason depends on (an
    ejection chain's members); the reason is kept when all of them keep their destinations."""
    if not units:
        return None
    state = after_fixes.clone()
    for s in greedy:
        state.apply(s.ct, s.dst, s.storage)
    origin = {ct: after_fixes.where[ct] for u in units for ct in u.members}
    assigned = Assignment(state, origin)
    for u in units:
        assigned.place(u, state.where[u.key].node, {})
    before = dict(assigned.node_of)
    ctx = Ctx(state)
    replaces = REPLACE_PASSES if len(units) <= REPLACE_MAX_UNITS else 0
    for _ in range(replaces + 1):
        improve(ctx, assigned, list(state.nodes))
        if replaces == 0 or not _replace_pass(ctx, assigned, movable):
            break
        replaces -= 1
    if assigned.node_of == before:
        return None
    proposal = [Target(u, assigned.node_of[u.key], _reason(u.key, reasons or {}, before, assigned.node_of))
                for u in assigned.units()]
    return _resequence(after_fixes, proposal, greedy, room)


def refine_exact(after_fixes: FleetState, greedy: list[Step], units: list[Unit], room: int,
                 time_limit_s: float) -> list[Step] | None:
    """CP-SAT's best end placement of ``units`` with at most ``room`` containers moved."""
    if not units or room <= 0:
        return None
    check_size(len(units), len(after_fixes.nodes))
    end = after_fixes.clone()
    for s in greedy:
        end.apply(s.ct, s.dst, s.storage)
    hint = {u.key: end.where[u.key].node for u in units}
    solution = solve(Ctx(after_fixes.clone()), units, "squares", max_moved=room, hint=hint,
                     time_limit_s=time_limit_s)
    if solution is None:
        return None
    proposal = [Target(u, solution.node_of[u.key], "rebalance (cp-sat)") for u in units
                if solution.node_of[u.key] != after_fixes.where[u.key].node]
    return _resequence(after_fixes, proposal, greedy, room)
