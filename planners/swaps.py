"""The local search's arithmetic in arrays: every swap pair at once, every unit's relocations at once.

A swap pass (:mod:`planners.improve`) ranks every pair of placed units on different nodes by the
objective change of exchanging them (:func:`planners.objective.swap_delta`) plus the change in
their priced move costs. Evacuating a node of 1,000 containers gives half a million pairs per
pass; one Python call per pair took seconds. Here the same arithmetic runs on numpy arrays, block
by block of rows (memory stays ``BLOCK x units``), in the same operation order as the scalar
functions, so every delta is the same float and the candidates come out in the same order —
``(delta, key a, key b)`` — as the pairwise loop they replace.

Move costs depend on the destination only through its class (platform, kernel, version, the
link, whether the disk is copied: :func:`planners.objective.price_of_class`), so a unit's cost
on every node is a few priced classes broadcast over the nodes (``cost_matrix``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from planners.objective import CPU_WEIGHT, price_of_class
from planners.state import FleetState, Placement
from planners.units import Unit

#: Rows of the pair matrix evaluated at once (memory: BLOCK x units floats per temporary).
BLOCK = 256


def _term(m: np.ndarray, c: np.ndarray, mem_den: np.ndarray, cpu_den: np.ndarray) -> np.ndarray:
    """:func:`planners.objective.node_term`, elementwise, in its operation order."""
    return m * m / mem_den + CPU_WEIGHT * c * c / cpu_den


def node_classes(st: FleetState, nodes: tuple[str, ...]) -> list[tuple[np.ndarray, str]]:
    """``nodes`` grouped by what a move's price sees of a destination (platform, kernel, version,
    the link, its shared storages): (indexes into ``nodes``, one of them), memoised per list."""
    memo = st.memo.setdefault("node_classes", {})
    if nodes not in memo:
        classes: dict[tuple[object, ...], list[int]] = {}
        for k, name in enumerate(nodes):
            n = st.nodes[name]
            classes.setdefault((n.platform, n.kernel, n.version, name if st.policy.link_mb_s else None,
                                frozenset(s for s, v in n.storage.items() if v.shared)), []).append(k)
        memo[nodes] = [(np.array(ks), nodes[ks[0]]) for ks in classes.values()]
    return memo[nodes]


def cost_matrix(st: FleetState, units: list[Unit], origin: dict[str, Placement], nodes: list[str],
                rows: dict[tuple[str, ...], dict[tuple[str | None, ...], np.ndarray]]) -> np.ndarray:
    """``[u, k]``: :meth:`planners.improve.Assignment.cost` of unit ``u`` on ``nodes[k]`` (members'
    current storages), by pricing one node per destination class. ``rows`` keeps each unit's row
    by the node list, then by the unit and its members' storages, so a pass recomputes only the units that moved."""
    out = np.zeros((len(units), len(nodes)))
    columns = tuple(nodes)
    groups = node_classes(st, columns)
    known = rows.setdefault(columns, {})
    for u, unit in enumerate(units):
        key = (unit.key, *[st.where[ct].storage for ct in unit.members])
        if key in known:
            out[u] = known[key]
            continue
        row = out[u]
        for ct in unit.members:
            home, storage = origin[ct], st.where[ct].storage
            if home.node not in st.nodes:
                continue  # a new container: nothing to copy (move_cost is 0)
            price = np.empty(len(nodes))
            for ks, rep in groups:  # move_cost, less its "staying costs nothing" (set below)
                price[ks] = price_of_class(st, ct, home.node, rep,
                                           st.copies_disk(home, Placement(rep, storage)))
            if home.node in nodes:
                price[nodes.index(home.node)] = 0.0
            row += price
        known[key] = row.copy()
    return out


def _balance(mem_i: np.ndarray, cpu_i: np.ndarray, side_i: tuple[np.ndarray, ...],
             mem_j: np.ndarray, cpu_j: np.ndarray, side_j: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Memory difference and :func:`planners.objective.swap_delta` of units ``i`` (the lower
    index) and ``j``, elementwise over broadcast or gathered arrays; a side is the unit's node's
    (memory load, CPU load, memory denominator, CPU denominator, objective term)."""
    lm_i, lc_i, dm_i, dc_i, here_i = side_i
    lm_j, lc_j, dm_j, dc_j, here_j = side_j
    dm = mem_j - mem_i
    dc = cpu_j - cpu_i
    before = here_i + here_j
    after = _term(lm_i + dm, lc_i + dc, dm_i, dc_i) + _term(lm_j - dm, lc_j - dc, dm_j, dc_j)
    return dm, after - before


#: per unit: its node, that node's memory and CPU load, its members' storages
Signature = tuple[list[str], np.ndarray, np.ndarray, list[list[str | None]]]


class PairRanking:
    """The improving swap pairs of the last pass and what each unit's deltas depended on.

    A pair's delta depends only on its two units' nodes, those nodes' loads and the units' cost
    rows (which depend on the members' storages); the next pass evaluates again only the pairs
    with a unit whose node, load or storages changed (a few swaps change a few nodes), keeps the
    others' verdicts, and sorts the union: the same pairs in the same order as evaluating all of
    them."""

    def __init__(self) -> None:
        self.keys: tuple[str, ...] = ()
        self.signature: Signature | None = None
        self.found: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def _changed(signature: Signature | None, memo: PairRanking | None, keys: tuple[str, ...]) -> np.ndarray | None:
    """Which units' node, node loads or storages changed since the last pass, when few enough did
    for evaluating their rows again to cost less than the triangle of every pair (under half)."""
    if signature is None or memo is None or memo.signature is None or memo.keys != keys:
        return None
    where, load_m, load_c, storages = signature
    was_where, was_m, was_c, was_storages = memo.signature
    changed = (np.array([a != b for a, b in zip(where, was_where, strict=True)], dtype=bool)
               | (load_m != was_m) | (load_c != was_c)
               | np.array([a != b for a, b in zip(storages, was_storages, strict=True)], dtype=bool))
    return changed if 2 * int(changed.sum()) < len(changed) else None


def swap_pairs(st: FleetState, units: list[Unit], node_of: Callable[[Unit], str],
               costs: np.ndarray, nodes: list[str], tiny: float,
               memo: PairRanking | None = None) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j`` (units sorted by key), on different nodes and of different
    memory, whose swap lowers the objective (balance and move costs) by more than ``tiny``,
    best first (ties by key). With ``memo`` (kept between passes over the same units), only the
    pairs whose inputs changed are evaluated again."""
    if len(units) < 2:
        return []
    index = {name: k for k, name in enumerate(nodes)}
    where = [node_of(u) for u in units]
    at = np.array([index[n] for n in where])
    mem = np.array([u.memory_mb for u in units], dtype=float)
    cpu = np.array([u.cpus for u in units], dtype=float)
    load_m = np.array([st.mem[n] for n in nodes], dtype=float)[at]
    load_c = np.array([st.cpu[n] for n in nodes], dtype=float)[at]
    den_m = np.array([st.mem_den[n] for n in nodes], dtype=float)[at]
    den_c = np.array([st.cpu_den[n] for n in nodes], dtype=float)[at]
    own = costs[np.arange(len(units)), at]
    here = _term(load_m, load_c, den_m, den_c)
    sides = (load_m, load_c, den_m, den_c, here)
    signature = (where, load_m, load_c,
                 [[st.where[ct].storage for ct in u.members] for u in units]) if memo is not None else None
    keys = tuple(u.key for u in units) if memo is not None else ()
    changed = _changed(signature, memo, keys)
    if changed is not None and memo is not None and memo.found is not None:
        d, i, j = memo.found
        stay = ~(changed[i] | changed[j])
        rows = np.nonzero(changed)[0]
        found = [(d[stay], i[stay], j[stay])] + [
            _row_pairs(rows[k:k + BLOCK], 0, changed, mem, cpu, sides, at, costs, own, tiny)
            for k in range(0, len(rows), BLOCK)]
    else:
        found = [_row_pairs(np.arange(k, min(k + BLOCK, len(units))), k, None, mem, cpu, sides, at, costs,
                            own, tiny) for k in range(0, len(units) - 1, BLOCK)]
    d, i, j = (np.concatenate([f[k] for f in found]) for k in range(3))
    if memo is not None:
        memo.keys, memo.signature, memo.found = keys, signature, (d, i, j)  # type: ignore[assignment]
    order = np.lexsort((j, i, d))
    return list(zip(i[order].tolist(), j[order].tolist(), strict=True))


def _with_costs(delta: np.ndarray, ri: np.ndarray, cj: np.ndarray, at: np.ndarray, costs: np.ndarray,
                own: np.ndarray, tiny: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(ri, cj)`` with balance ``delta``, plus their move costs, that still improve."""
    d = delta + (((costs[ri, at[cj]] + costs[cj, at[ri]]) - own[ri]) - own[cj])
    ok = d < -tiny
    return d[ok], ri[ok], cj[ok]


def _row_pairs(rows: np.ndarray, first: int, changed: np.ndarray | None, mem: np.ndarray, cpu: np.ndarray,
               sides: tuple[np.ndarray, ...], at: np.ndarray, costs: np.ndarray, own: np.ndarray,
               tiny: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Improving pairs of a unit in ``rows`` with a unit from index ``first`` on, as ``(d, i, j)``
    with ``i < j``. Without ``changed``: the upper triangle (``j > i``). With it: each pair with a
    changed unit once (a pair of two changed units from its lower row). The balance delta is the
    same float whichever unit is the row (``swap_delta`` is symmetric in IEEE arithmetic: the
    memory difference only changes sign, sums commute); the costs are added with ``i`` first."""
    col = np.arange(first, len(mem))[None, :]
    row = rows[:, None]
    dm, delta = _balance(mem[row], cpu[row], tuple(a[row] for a in sides),
                         mem[None, first:], cpu[None, first:], tuple(a[None, first:] for a in sides))
    pick = col > row if changed is None else (col != row) & (~changed[col] | (row < col))
    ri, ck = np.nonzero(pick & (at[None, first:] != at[row]) & (dm != 0) & (delta < -tiny))
    r, c = rows[ri], ck + first
    return _with_costs(delta[ri, ck], np.minimum(r, c), np.maximum(r, c), at, costs, own, tiny)


def relocation_table(st: FleetState, units: list[Unit], heres: list[str], nodes: list[str]) -> np.ndarray:
    """``[u, k]``: :func:`planners.objective.relocation_delta` of ``units[u]`` from ``heres[u]`` to
    ``nodes[k]`` at the current loads, for many units at once (the same floats: a unit's row is
    the scalar function's floats)."""
    mem = np.array([u.memory_mb for u in units], dtype=float)[:, None]
    cpu = np.array([u.cpus for u in units], dtype=float)[:, None]
    src_m = np.array([st.mem[n] for n in heres], dtype=float)[:, None]
    src_c = np.array([st.cpu[n] for n in heres], dtype=float)[:, None]
    src_dm = np.array([st.mem_den[n] for n in heres], dtype=float)[:, None]
    src_dc = np.array([st.cpu_den[n] for n in heres], dtype=float)[:, None]
    load_m = np.array([st.mem[n] for n in nodes], dtype=float)[None, :]
    load_c = np.array([st.cpu[n] for n in nodes], dtype=float)[None, :]
    den_m = np.array([st.mem_den[n] for n in nodes], dtype=float)[None, :]
    den_c = np.array([st.cpu_den[n] for n in nodes], dtype=float)[None, :]
    stay = _term(src_m, src_c, src_dm, src_dc)
    leave = _term(src_m - mem, src_c - cpu, src_dm, src_dc)
    before = stay + _term(load_m, load_c, den_m, den_c)
    after = leave + _term(load_m + mem, load_c + cpu, den_m, den_c)
    return after - before
