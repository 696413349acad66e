"""Order moves toward a target placement so that every prefix keeps every rule; break cycles.

A target placement (from local search or CP-SAT) is feasible as an end state, but the moves may
need each other's room: a swap of two containers between two full nodes, or a longer cycle. The
sequencer repeatedly runs the first pending move that the filters accept *now*; when none is
accepted the pending moves wait on each other, and one of them — a unit whose departure frees room
another pending move waits for — is *parked* on a third node that accepts it, then moves on to its
target later (two moves, both in the plan, the first saying why). With no node to park on, the
first pending move is dropped and reported with the rule that blocks it.

    pending --first accepted now--> step (apply) --> pending ...
       | none accepted
       v
    park a blocking unit on a third node (step "park ...")  |  or drop one, with the reason
"""

from __future__ import annotations

from dataclasses import dataclass

from planners.ranking import Candidate, Rejection, best, evaluate
from planners.rulebook import Ctx
from planners.state import FleetState
from planners.units import Unit
from planners.waves import Step


@dataclass(frozen=True)
class Target:
    unit: Unit
    node: str
    reason: str


def _home(st: FleetState, unit: Unit) -> str | None:
    nodes = {st.where[ct].node for ct in unit.members}
    return nodes.pop() if len(nodes) == 1 else None


def _pct(x: float) -> str:
    return f"{round(x * 100)} %"


def emit(st: FleetState, steps: list[Step], unit: Unit, node: str,
         storages: dict[str, str | None], why: str, figures: bool = True) -> None:
    """Apply a unit's move to the state and record one step per member that moves; the reason
    is ``why``, followed (``figures``) by the memory use of source and destination before/after."""
    for ct in unit.members:
        src = st.where[ct].node
        if src == node:
            continue
        before_src, before_dst = st.mem_util(src), st.mem_util(node)
        st.apply(ct, node, storages.get(ct))
        reason = why if not figures else (
            f"{why}; {src} memory {_pct(before_src)} -> {_pct(st.mem_util(src))}, "
            f"{node} {_pct(before_dst)} -> {_pct(st.mem_util(node))}")
        steps.append(Step(ct, src, node, storages.get(ct), reason))


def _park(ctx: Ctx, pending: list[Target], steps: list[Step]) -> bool:
    st = ctx.state
    awaited = {t.node for t in pending}
    for t in pending:
        src = _home(st, t.unit)
        if src is None or src not in awaited:
            continue
        spare = [n for n in st.nodes if n not in (src, t.node)]
        cand, _ = best(ctx, t.unit, spare, explain=False)
        if cand is not None:
            emit(st, steps, t.unit, cand.node, cand.storages,
                 f"park {t.unit.key} on {cand.node} to break a cycle (a move into {src} needs its "
                 f"room first; it moves on to {t.node} later)")
            return True
    return False


def sequence(ctx: Ctx, targets: list[Target], *, max_parks: int,
             figures: bool = True) -> tuple[list[Step], list[tuple[Target, str]]]:
    """Steps reaching ``targets`` from ``ctx.state`` (which is advanced), and the dropped targets.

    Targets earlier in the list go first whenever the rules allow, so callers choose the order.
    """
    st = ctx.state
    pending = [t for t in targets if any(st.where[ct].node != t.node for ct in t.unit.members)]
    steps: list[Step] = []
    dropped: list[tuple[Target, str]] = []
    parks = 0
    while pending:
        ready = None
        for i, t in enumerate(pending):
            result = evaluate(ctx, t.unit, t.node)
            if isinstance(result, Candidate):
                ready = (i, result)
                break
        if ready is not None:
            t = pending.pop(ready[0])
            emit(st, steps, t.unit, t.node, ready[1].storages, t.reason, figures)
            continue
        if parks < max_parks and _park(ctx, pending, steps):
            parks += 1
            continue
        t = pending.pop(0)
        result = evaluate(ctx, t.unit, t.node)
        why = result.reason if isinstance(result, Rejection) else "no order of the moves frees room"
        dropped.append((t, f"no order of the moves makes room: {why}"))
    return steps, dropped
