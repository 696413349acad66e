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

from planners.cpsat import solve
from planners.filters import Ctx
from planners.improve import Assignment, improve
from planners.objective import node_term, priced
from planners.sequence import Target, sequence
from planners.state import FleetState, Placement
from planners.units import Unit
from planners.waves import Step


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


def refine_local(after_fixes: FleetState, greedy: list[Step], units: list[Unit],
                 room: int) -> list[Step] | None:
    """Relocate/swap the greedily moved ``units`` among destinations; None if nothing better."""
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
    improve(Ctx(state), assigned, list(state.nodes))
    if assigned.node_of == before:
        return None
    proposal = [Target(u, assigned.node_of[u.key], "rebalance (refined)") for u in units]
    return _resequence(after_fixes, proposal, greedy, room)


def refine_exact(after_fixes: FleetState, greedy: list[Step], units: list[Unit], room: int,
                 time_limit_s: float) -> list[Step] | None:
    """CP-SAT's best end placement of ``units`` with at most ``room`` containers moved."""
    if not units or room <= 0:
        return None
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
