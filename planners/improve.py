"""Local search over a set of placed units: relocate one, or swap two, while the objective drops.

Greedy placement (largest first, best node) is within a few per cent of the optimum on most
fleets; the rest is won by first-improvement local search, the textbook step after a
constructive bin-packing heuristic. Each candidate is ranked by an arithmetic delta of the
objective (:mod:`planners.objective`); only improving candidates run the filters, best first.
Every pass is bounded (:data:`MAX_PASSES`, :data:`NEAREST`), so planning time stays predictable.

The searched units move from their ``origin`` (where the snapshot has them) to their assigned
node; to test a new node a unit is first *lifted* back to its origin in the bookkeeping, so the
filters see exactly the world without it.
"""

from __future__ import annotations

import numpy as np

from planners.objective import move_cost, swap_delta
from planners.ranking import rank
from planners.rulebook import Ctx
from planners.state import FleetState, Placement
from planners.swaps import PairRanking, cost_matrix, relocation_table, swap_pairs
from planners.units import Unit

#: Upper bound on improvement passes over all units.
MAX_PASSES = 8
#: Destinations examined per unit and pass: the least-loaded nodes by memory at the pass start.
NEAREST = 24
#: Improvements smaller than this are noise.
TINY = 1e-9


class Assignment:
    """Units placed away from their origin; keeps the FleetState in step."""

    def __init__(self, state: FleetState, origin: dict[str, Placement]) -> None:
        self.state = state
        self.origin = origin
        self.node_of: dict[str, str] = {}
        self._units: dict[str, Unit] = {}
        #: cost rows of the swap pass (planners.swaps.cost_matrix), by unit and its storages
        self.cost_rows: dict[tuple[str, ...], dict[tuple[str | None, ...], np.ndarray]] = {}
        #: the swap pass's pairs of the last pass (planners.swaps.PairRanking)
        self.pair_ranking = PairRanking()

    def units(self) -> list[Unit]:
        return [self._units[k] for k in sorted(self._units)]

    def place(self, unit: Unit, node: str, storages: dict[str, str | None]) -> None:
        for ct in unit.members:
            if self.state.where[ct].node != node:
                self.state.apply(ct, node, storages.get(ct))
        self.node_of[unit.key] = node
        self._units[unit.key] = unit

    def lift(self, unit: Unit) -> dict[str, str | None]:
        """Put the unit back at its origin (bookkeeping only); returns its storages for undo."""
        storages = {ct: self.state.where[ct].storage for ct in unit.members}
        for ct in unit.members:
            home = self.origin[ct]
            self.state.apply(ct, home.node, home.storage)
        return storages

    def drop(self, unit: Unit) -> None:
        """Send the unit home for good: it no longer moves."""
        self.lift(unit)
        del self.node_of[unit.key]
        del self._units[unit.key]

    def cost(self, unit: Unit, node: str) -> float:
        st = self.state
        return sum(move_cost(st, ct, self.origin[ct], node, st.where[ct].storage) for ct in unit.members)


def _try(ctx: Ctx, assigned: Assignment, unit: Unit, node: str) -> bool:
    """Move a placed unit to ``node`` if the filters allow it; else leave it where it was."""
    here = assigned.node_of[unit.key]
    storages = assigned.lift(unit)
    good, _ = rank(ctx, unit, [node])
    if good:
        assigned.place(unit, node, good[0].storages)
        return True
    assigned.place(unit, here, storages)
    return False


def _relocate_pass(ctx: Ctx, assigned: Assignment, targets: list[str]) -> bool:
    """Each unit, largest first, to the best of the :data:`NEAREST` coolest nodes that lowers the
    objective net of move costs. The balance deltas of all the units still to visit are one
    array (:func:`planners.swaps.relocation_table`), computed again after any move was tried
    (a try changes the loads); the cost terms are priced only for the improving few."""
    st = assigned.state
    improved = False
    coolest = sorted(targets, key=lambda n: (st.mem_util(n), n))[:NEAREST + 1]
    units = sorted(assigned.units(), key=lambda u: (-u.memory_mb, u.key))
    table, first = None, 0
    for k, unit in enumerate(units):
        if table is None:
            first = k
            heres = [assigned.node_of[u.key] for u in units[k:]]
            table = relocation_table(st, units[k:], heres, coolest)
            rows = table < -TINY
        if not rows[k - first].any():
            continue
        here = assigned.node_of[unit.key]
        nearest = [(c, n) for c, n in enumerate(coolest) if n != here][:NEAREST]
        base = assigned.cost(unit, here)
        deltas = []
        for c, node in nearest:
            delta = float(table[k - first, c])
            if delta < -TINY:
                delta += assigned.cost(unit, node) - base
                if delta < -TINY:
                    deltas.append((delta, node))
        for _, node in sorted(deltas)[:4]:
            table = None
            if _try(ctx, assigned, unit, node):
                improved = True
                break
    return improved


def _try_swap(ctx: Ctx, assigned: Assignment, a: Unit, b: Unit) -> bool:
    na, nb = assigned.node_of[a.key], assigned.node_of[b.key]
    sa, sb = assigned.lift(a), assigned.lift(b)
    good_b, _ = rank(ctx, b, [na])
    if good_b:
        assigned.place(b, na, good_b[0].storages)
        good_a, _ = rank(ctx, a, [nb])
        if good_a:
            assigned.place(a, nb, good_a[0].storages)
            return True
        assigned.lift(b)
    assigned.place(a, na, sa)
    assigned.place(b, nb, sb)
    return False


def _swap_pass(ctx: Ctx, assigned: Assignment) -> bool:
    """Every improving pair (:func:`planners.swaps.swap_pairs`, ranked at the pass start), best
    first; a pair whose units already swapped, or whose gain an earlier swap took, is skipped.
    The gain is checked again only when a swap tried this pass touched one of the pair's nodes
    (else the loads, and so the delta, are still those it was ranked with)."""
    st = assigned.state
    units = assigned.units()
    where = [assigned.node_of[u.key] for u in units]
    nodes = sorted(set(where))
    costs = cost_matrix(st, units, assigned.origin, nodes, assigned.cost_rows)
    pairs = swap_pairs(st, units, lambda u: assigned.node_of[u.key], costs, nodes, TINY,
                       assigned.pair_ranking)
    improved = False
    touched: set[int] = set()
    dirty: set[str] = set()  # nodes whose load a swap tried this pass may have changed
    for i, j in pairs:
        if i in touched or j in touched:
            continue
        a, b = units[i], units[j]
        na, nb = where[i], where[j]
        if (na in dirty or nb in dirty) and swap_delta(st, a, na, b, nb) >= -TINY:
            continue  # an earlier swap this pass changed the loads
        dirty.update((na, nb), (assigned.origin[ct].node for ct in a.members + b.members))
        if _try_swap(ctx, assigned, a, b):
            touched.update((i, j))
            improved = True
    return improved


def improve(ctx: Ctx, assigned: Assignment, targets: list[str]) -> None:
    """Relocate and swap passes until neither improves or :data:`MAX_PASSES` is reached."""
    for _ in range(MAX_PASSES):
        moved = _relocate_pass(ctx, assigned, targets)
        swapped = _swap_pass(ctx, assigned)
        if not (moved or swapped):
            return
