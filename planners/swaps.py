"""The local search's arithmetic in arrays: every swap pair at once, a unit's relocations at once.

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

from planners.objective import CPU_WEIGHT, node_term, price_of_class
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
                rows: dict[tuple[object, ...], np.ndarray]) -> np.ndarray:
    """``[u, k]``: :meth:`planners.improve.Assignment.cost` of unit ``u`` on ``nodes[k]`` (members'
    current storages), by pricing one node per destination class. ``rows`` keeps each unit's row
    by its members' storages, so a pass recomputes only the units that moved."""
    out = np.zeros((len(units), len(nodes)))
    columns = tuple(nodes)
    groups = node_classes(st, columns)
    for u, unit in enumerate(units):
        key = (columns, unit.key, tuple(st.where[ct].storage for ct in unit.members))
        if key in rows:
            out[u] = rows[key]
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
        rows[key] = row.copy()
    return out


def swap_pairs(st: FleetState, units: list[Unit], node_of: Callable[[Unit], str],
               costs: np.ndarray, nodes: list[str], tiny: float) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j`` (units sorted by key), on different nodes and of different
    memory, whose swap lowers the objective (balance and move costs) by more than ``tiny``,
    best first (ties by key)."""
    if len(units) < 2:
        return []
    index = {name: k for k, name in enumerate(nodes)}
    at = np.array([index[node_of(u)] for u in units])
    mem = np.array([u.memory_mb for u in units], dtype=float)
    cpu = np.array([u.cpus for u in units], dtype=float)
    load_m = np.array([st.mem[n] for n in nodes], dtype=float)[at]
    load_c = np.array([st.cpu[n] for n in nodes], dtype=float)[at]
    den_m = np.array([st.mem_den[n] for n in nodes], dtype=float)[at]
    den_c = np.array([st.cpu_den[n] for n in nodes], dtype=float)[at]
    own = costs[np.arange(len(units)), at]
    here = _term(load_m, load_c, den_m, den_c)
    found_d, found_i, found_j = [], [], []
    for start in range(0, len(units) - 1, BLOCK):
        rows = np.arange(start, min(start + BLOCK, len(units)))[:, None]
        cols = np.arange(start, len(units))  # the upper triangle: j > i
        b_m, b_c, b_at = mem[None, start:], cpu[None, start:], at[None, start:]
        dm = b_m - mem[rows]
        dc = b_c - cpu[rows]
        before = here[rows] + here[None, start:]
        after = (_term(load_m[rows] + dm, load_c[rows] + dc, den_m[rows], den_c[rows])
                 + _term(load_m[None, start:] - dm, load_c[None, start:] - dc,
                         den_m[None, start:], den_c[None, start:]))
        delta = after - before
        keep = (cols[None, :] > rows) & (b_at != at[rows]) & (dm != 0) & (delta < -tiny)
        ri, ck = np.nonzero(keep)
        d = delta[ri, ck]
        ri, cj = ri + start, ck + start
        d = d + (((costs[ri, at[cj]] + costs[cj, at[ri]]) - own[ri]) - own[cj])
        ok = d < -tiny
        found_d.append(d[ok])
        found_i.append(ri[ok])
        found_j.append(cj[ok])
    d, i, j = np.concatenate(found_d), np.concatenate(found_i), np.concatenate(found_j)
    order = np.lexsort((j, i, d))
    return list(zip(i[order].tolist(), j[order].tolist(), strict=True))


def relocation_table(st: FleetState, units: list[Unit], heres: list[str], nodes: list[str]) -> np.ndarray:
    """``[u, k]``: :func:`planners.objective.relocation_delta` of ``units[u]`` from ``heres[u]`` to
    ``nodes[k]`` at the current loads, for many units at once (the same floats: a unit's row is
    what :func:`relocation_deltas` gives it)."""
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


def relocation_deltas(st: FleetState, unit: Unit, src: str, nodes: list[str]) -> list[float]:
    """:func:`planners.objective.relocation_delta` of ``unit`` from ``src`` to each of ``nodes``
    (the same floats, in one pass of array operations)."""
    mem, cpu = unit.memory_mb, unit.cpus
    stay = node_term(st, src, st.mem[src], st.cpu[src])
    leave = node_term(st, src, st.mem[src] - mem, st.cpu[src] - cpu)
    load_m = np.array([st.mem[n] for n in nodes], dtype=float)
    load_c = np.array([st.cpu[n] for n in nodes], dtype=float)
    den_m = np.array([st.mem_den[n] for n in nodes], dtype=float)
    den_c = np.array([st.cpu_den[n] for n in nodes], dtype=float)
    before = stay + _term(load_m, load_c, den_m, den_c)
    after = leave + _term(load_m + mem, load_c + cpu, den_m, den_c)
    return (after - before).tolist()
