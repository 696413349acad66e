"""One unit's score on many nodes at once: :func:`planners.scorers.score` over numpy arrays.

:func:`planners.ranking.best` scores every candidate node before it runs a filter; placing the
1,000 units of a big node on a 400-node fleet scored 400,000 (unit, node) pairs one Python call
at a time. Here the default scorers (memory balance, CPU balance, expected move cost) run over
all nodes in a few array operations, in the scalar functions' operation order, so every score is
the same float :func:`~planners.scorers.score` gives (``tests/unit/planners`` checks it). A
custom :data:`~planners.scorers.SCORERS` tuple (not ``DEFAULT_SCORERS``) falls back to the scalar path.

Expected move costs depend on a node only through its class (platform, kernel, version, the link,
its shared storages: :func:`planners.objective.price_of_class`), so each member is priced once
per class.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator

import numpy as np

from planners import scorers
from planners.objective import CPU_WEIGHT, expected_copy, price_of_class
from planners.rulebook import Ctx
from planners.scorers import score
from planners.state import FleetState
from planners.swaps import node_classes
from planners.units import Unit

#: Below this many nodes the scalar loop is as fast.
MIN_NODES = 32


class _Nodes:
    """Fixed facts of a node list: denominators and destination classes (memoised per list)."""

    def __init__(self, st: FleetState, nodes: tuple[str, ...]) -> None:
        self.index = {n: k for k, n in enumerate(nodes)}
        self.mem_den = np.array([st.mem_den[n] for n in nodes], dtype=float)
        self.cpu_den = np.array([st.cpu_den[n] for n in nodes], dtype=float)
        self.name_rank = np.argsort(np.argsort(np.array(nodes)))
        self.classes = node_classes(st, nodes)
        #: the nodes' current loads in one C call: ``self.loads(st.mem)``
        self.loads = operator.itemgetter(*nodes) if len(nodes) > 1 else lambda d: tuple(d[n] for n in nodes)


def _facts(st: FleetState, nodes: tuple[str, ...]) -> _Nodes:
    memo = st.memo.setdefault("score_many", {})
    if nodes not in memo:
        memo[nodes] = _Nodes(st, nodes)
    return memo[nodes]


def _increase(load: np.ndarray, add: np.ndarray, den: np.ndarray) -> np.ndarray:
    """:func:`planners.scorers.squared_increase`, elementwise."""
    after = load + add
    return (after * after - load * load) / den


def scores(ctx: Ctx, unit: Unit, nodes: list[str]) -> np.ndarray | None:
    """``score(ctx, unit, n, None)`` for every node, or None when the scalar path must run."""
    if scorers.SCORERS is not scorers.DEFAULT_SCORERS or len(nodes) < MIN_NODES:
        return None
    st = ctx.state
    facts = _facts(st, tuple(nodes))
    mem_load = np.array(facts.loads(st.mem), dtype=float)
    cpu_load = np.array(facts.loads(st.cpu), dtype=float)
    add_m: float = 0
    add_c: float = 0
    for ct in unit.members:
        add_m += st.containers[ct].memory_mb
        add_c += st.containers[ct].cpus
    mem_add = np.full(len(nodes), float(add_m))
    cpu_add = np.full(len(nodes), float(add_c))
    cost = np.zeros(len(nodes))
    holders = {st.where[ct].node for ct in unit.members} & facts.index.keys()
    for ct in unit.members:
        src = st.where[ct].node
        if src not in st.nodes:
            continue  # a new container: nothing to copy
        price = np.empty(len(nodes))
        for ks, rep in facts.classes:
            price[ks] = price_of_class(st, ct, src, rep, expected_copy(st, ct, rep))
        if src in facts.index:
            price[facts.index[src]] = 0.0
        cost += price
    for node in holders:  # members already there neither arrive nor cost: the scalar sums
        k = facts.index[node]
        m: float = 0
        c: float = 0
        p: float = 0
        for ct in unit.members:
            if st.where[ct].node != node:
                m += st.containers[ct].memory_mb
                c += st.containers[ct].cpus
                if st.where[ct].node in st.nodes:
                    p += price_of_class(st, ct, st.where[ct].node, node, expected_copy(st, ct, node))
        mem_add[k], cpu_add[k], cost[k] = m, c, p
    total = 0.0 + _increase(mem_load, mem_add, facts.mem_den)
    total = total + CPU_WEIGHT * _increase(cpu_load, cpu_add, facts.cpu_den)
    return total + cost


def order(ctx: Ctx, unit: Unit, nodes: list[str]) -> Iterator[str]:
    """``nodes`` by ``(score, name)``, as ``sorted((score(...), n) for n in nodes)`` orders them
    (lazily: a caller that stops at the first feasible node reads no further)."""
    many = scores(ctx, unit, nodes)
    if many is None:
        yield from (n for _, n in sorted((score(ctx, unit, n, None), n) for n in nodes))
        return
    for k in np.lexsort((_facts(ctx.state, tuple(nodes)).name_rank, many)).tolist():
        yield nodes[k]
