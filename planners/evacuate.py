"""evacuate / drain: give every container on the named nodes a destination.

    units on the nodes --largest first--> best node (filters, then scorers)
            |                                  | none fits
            |                                  v
            |                           make room: move one other unit elsewhere (said so)
            |                                  | still none
            |                                  v
            |                           unplaced, with the binding constraint
            v
    local search (relocate / swap evacuees)  [+ CP-SAT with solver="cp-sat"]
            |
            v
    sequence: make-room moves first, then evacuees longest first --> build_plan

Only the evacuated containers move (with their affinity mates), unless moving one other unit is
the only way to make room for an evacuee; such moves come first and their reason says whom they
make room for. Destinations mostly only gain load, but mates and make-room moves also leave
nodes, so the sequencer (:mod:`planners.sequence`) fixes an order in which every prefix keeps
every rule. Longest moves first lets waves pair moves of similar duration (shorter makespan).
"""
from __future__ import annotations

from typing import Literal

from fleet.errors import InputError
from fleet.model import Inventory
from fleet.plan import Goal, Plan, Unplaced
from fleet.policy import Policy
from fleet.rules import effective_rules
from planners.assemble import build_plan
from planners.costs import predict
from planners.cpsat import check_size, solve
from planners.improve import Assignment, improve
from planners.objective import node_term
from planners.ranking import Candidate, best, evaluate, explain_unplaced
from planners.room import make_room
from planners.rulebook import Ctx
from planners.sequence import Target, emit, sequence
from planners.state import FleetState, Placement
from planners.units import Unit, units_of

#: How many stuck units may try the make-room search (planners.room) per plan.
ROOM_TRIES = 16


def resolve_nodes(inv: Inventory, nodes: list[str]) -> list[str]:
    """Validate node names (InputError on an unknown one) and drop repeats, keeping order."""
    known = {n.name for n in inv.nodes}
    if not nodes:
        raise InputError("node", "", "name at least one node")
    out: list[str] = []
    for name in nodes:
        if name not in known:
            raise InputError("node", name, f"no such node (known: {', '.join(sorted(known)[:8])})")
        if name not in out:
            out.append(name)
    return out


def _pct(x: float) -> str:
    return f"{round(x * 100)} %"


def _immovable_reason(state: FleetState, unit: Unit) -> str:
    ct = unit.immovable[0]
    why = "pinned" if ct in state.rules.pinned else "ignored"
    return f"{ct} is {why} (never moves); its affinity group stays" if len(unit.members) > 1 \
        else f"{ct} is {why} (never moves)"


def _place_all(ctx: Ctx, units: list[Unit], targets: list[str], origin: dict[str, Placement],
               kind: str) -> tuple[Assignment, list[Target], list[Unplaced]]:
    """Greedy: largest unit first to its best node, making room once if that is the only way."""
    state = ctx.state
    assigned = Assignment(state, origin)
    room: list[Target] = []
    unplaced: list[Unplaced] = []
    moved: set[str] = set(origin)
    for unit in sorted(units, key=lambda u: (-u.memory_mb, u.key)):
        if unit.immovable:
            unplaced.extend(Unplaced(ct=ct, reason=_immovable_reason(state, unit)) for ct in unit.members)
            continue
        chosen, bad = best(ctx, unit, targets)
        if chosen is None and len(room) < ROOM_TRIES:
            found = make_room(ctx, unit, targets, {r.node: r.filter for r in bad}, moved)
            if found is not None:
                other, node, storages, host = found
                moved.update(other.members)
                emit(state, [], other, node, storages, "")
                leaving = next(origin[ct].node for ct in unit.members if origin[ct].node not in targets)
                room.append(Target(other, node, f"make room on {host} for {unit.key} ({kind} {leaving})"))
                chosen, bad = best(ctx, unit, targets)
        if chosen is None:
            why = explain_unplaced(ctx, unit, bad)
            unplaced.extend(Unplaced(ct=ct, reason=why) for ct in unit.members)
            continue
        assigned.place(unit, chosen.node, chosen.storages)
    return assigned, room, unplaced


def _value(assigned: Assignment) -> float:
    st = assigned.state
    return sum(node_term(st, n, st.mem[n], st.cpu[n]) for n in st.nodes) + sum(
        assigned.cost(u, assigned.node_of[u.key]) for u in assigned.units())


def _exact(start: FleetState, emptying: frozenset[str], greedy: Assignment,
           time_limit_s: float) -> Assignment | None:
    """CP-SAT's placement of the greedily placed units, if it is complete and better."""
    units = greedy.units()
    check_size(len(units), len(start.nodes))
    solution = solve(Ctx(start.clone(), emptying), units, "squares", may_stay=False,
                     hint=dict(greedy.node_of), time_limit_s=time_limit_s)
    if solution is None:
        return None
    ctx = Ctx(start.clone(), emptying)
    exact = Assignment(ctx.state, greedy.origin)
    for unit in units:
        result = evaluate(ctx, unit, solution.node_of[unit.key])
        if not isinstance(result, Candidate):
            return None  # disk, which the model leaves out, does not fit
        exact.place(unit, result.node, result.storages)
    return exact if _value(exact) < _value(greedy) - 1e-12 else None


def _empty(inv: Inventory, nodes: list[str], policy: Policy, kind: str, solver: str,
           time_limit_s: float) -> Plan:
    if solver not in ("greedy", "cp-sat"):
        raise InputError("solver", solver, "must be greedy or cp-sat")
    names = resolve_nodes(inv, nodes)
    rules = effective_rules(inv)
    state = FleetState(inv, policy, rules)
    start = state.clone()
    ctx = Ctx(state, frozenset(names))
    units = units_of(state, [c.id for c in inv.containers if c.node in ctx.emptying])
    targets = [n.name for n in inv.nodes if n.name not in ctx.emptying]
    origin = {ct: state.where[ct] for u in units for ct in u.members}
    assigned, room, unplaced = _place_all(ctx, units, targets, origin, kind)
    if not room:
        improve(ctx, assigned, targets)
        if solver == "cp-sat" and assigned.units():
            exact = _exact(start, ctx.emptying, assigned, time_limit_s)
            if exact is not None:
                assigned = exact
                improve(Ctx(exact.state, ctx.emptying), exact, targets)
    # Destinations mostly only gain, but affinity mates and make-room moves also leave nodes:
    # the sequencer finds an order in which every prefix keeps the rules (room moves first).
    wanted = room + _evacuee_targets(assigned.state, assigned, kind, targets)
    steps, dropped = sequence(Ctx(start.clone(), ctx.emptying), wanted, max_parks=len(wanted),
                              figures=False)
    for target, why in dropped:
        unplaced.extend(Unplaced(ct=ct, reason=why) for ct in target.unit.members if ct in origin)
    movable = set(origin) - {u.ct for u in unplaced} | {s.ct for s in steps}
    return build_plan(start, Goal(kind=kind, nodes=names), steps, unplaced,
                      movable=movable, units=[u for u in units if u.key in movable],
                      emptying=ctx.emptying)


def _evacuee_targets(state: FleetState, assigned: Assignment, kind: str, targets: list[str]) -> list[Target]:
    """One target per placed unit, with its reason; longest predicted move first, so that waves
    pair moves of similar duration (see module docstring)."""
    out: list[tuple[float, str, Target]] = []
    receiving = [n for n in targets if state.nodes[n].receives and n not in state.rules.exclude_nodes]
    lowest = min((state.mem_util(n) for n in receiving), default=0.0)
    for unit in assigned.units():
        node = assigned.node_of[unit.key]
        util = state.mem_util(node)
        leaving = next(assigned.origin[ct].node for ct in unit.members
                       if assigned.origin[ct].node not in targets)
        longest = 0.0
        for ct in unit.members:
            src: Placement = assigned.origin[ct]
            if src.node != node:
                copied = state.copies_disk(src, Placement(node, state.where[ct].storage))
                cost = predict(state.containers[ct], state.nodes[src.node], state.nodes[node],
                               state.policy, copied)
                longest = max(longest, cost.duration_s)
        group = " with its affinity group" if any(
            assigned.origin[ct].node != leaving for ct in unit.members) else ""
        if util <= lowest + 1e-9:
            why = f"{kind} {leaving}{group}; {node} has the lowest memory use after the move ({_pct(util)})"
        else:
            why = (f"{kind} {leaving}{group}; {node} ends at {_pct(util)} memory (best balance of "
                   "memory, CPU and copy cost found)")
        out.append((-longest, unit.key, Target(unit, node, why)))
    out.sort(key=lambda t: t[:2])
    return [t for _, _, t in out]


def plan_evacuate(inv: Inventory, nodes: list[str], policy: Policy, *,
                  solver: Literal["greedy", "cp-sat"] = "greedy", time_limit_s: float = 10.0) -> Plan:
    """Every container on ``nodes`` gets a destination (goal ``evacuate``).

    ``solver="cp-sat"`` also asks CP-SAT for the best placement of the evacuees (deterministic
    time limit ``time_limit_s``) and keeps it when it beats the heuristic; for small and medium
    fleets — the default heuristic is already near-optimal (see BENCHMARKS.md).
    """
    return _empty(inv, nodes, policy, "evacuate", solver, time_limit_s)


def plan_drain(inv: Inventory, nodes: list[str], policy: Policy, *,
               solver: Literal["greedy", "cp-sat"] = "greedy", time_limit_s: float = 10.0) -> Plan:
    """As :func:`plan_evacuate`, for maintenance (goal ``drain``; the engine fits it in windows)."""
    return _empty(inv, nodes, policy, "drain", solver, time_limit_s)
