"""Make room: the one other unit whose move elsewhere lets a stuck unit fit on its node.

Used by evacuate/drain (an evacuee fits nowhere); rebalance has its own objective-ranked chains
(:mod:`planners.chains`). The search is bounded so that it stays cheap on large fleets: the
:data:`ROOM_NODES` allowed nodes closest to fitting; on each, the :data:`ROOM_UNITS` smallest
units that free enough memory; for each, the :data:`ROOM_DESTS` least-loaded destinations.
"""

from __future__ import annotations

from planners.ranking import Candidate, evaluate, rank
from planners.rulebook import Ctx
from planners.units import Unit, unit_memory_on, units_of

ROOM_NODES = 8
ROOM_UNITS = 8
ROOM_DESTS = 32


def make_room(ctx: Ctx, unit: Unit, targets: list[str], rejected: dict[str, str],
              stay: set[str]) -> tuple[Unit, str, dict[str, str | None], str] | None:
    """(other unit, its new node, its storages, the node it frees for ``unit``), or None.

    ``rejected`` maps each target node to the filter that rejected ``unit`` there (only nodes
    rejected for capacity can be freed); containers in ``stay`` are not moved.
    """
    st = ctx.state
    roomy = [n for n in targets if rejected.get(n) in ("memory", "cpu", "disk")]
    short = {n: unit_memory_on(st, unit, n) - (st.mem_cap(n) - st.mem[n]) for n in roomy}
    roomy.sort(key=lambda n: (short[n], n))
    dests = sorted(targets, key=lambda n: (st.mem_util(n), n))[:ROOM_DESTS]
    for host in roomy[:ROOM_NODES]:
        others = units_of(st, sorted(ct for ct in st.members[host] if ct not in stay))
        others = [u for u in others if not u.immovable and u.memory_mb >= short[host]
                  and all(st.where[m].node == host for m in u.members)]
        others.sort(key=lambda u: (u.memory_mb, u.key))
        for other in others[:ROOM_UNITS]:
            good, _ = rank(ctx, other, [n for n in dests if n != host])
            for cand in good[:3]:
                undo = [(ct, st.apply(ct, cand.node, cand.storages.get(ct))) for ct in other.members]
                fits = evaluate(ctx, unit, host)
                for ct, old in reversed(undo):
                    st.undo(ct, old)
                if isinstance(fits, Candidate):
                    return other, cand.node, cand.storages, host
    return None
