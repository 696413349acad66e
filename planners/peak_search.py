"""A bounded depth-first search for moves that bring every node to a level: the packing the greedy
misses.

The greedy of :mod:`planners.peak` sheds each hot node on its own, largest units or one covering
unit first. Below its lowest level the rest is packing: which units leave which node so that
they fit the holes the other nodes have below the level, within the move budget (on mixed node
sizes it can pay to shed two 4 GiB units rather than one 16 GiB unit, so that a 16 GiB unit from
another node still finds a hole; or to move a small unit back onto a node that is now below the
level). This search tries those alternatives, depth first, in the greedy's order:

    the node most over the level -> one unit per memory size on it (smallest covering size first,
    then largest) -> each hole it fits at or below the level (tightest first) that passes every
    filter -> recurse; else a make-room hop: a unit leaves a node the unit almost fits (for a hole
    elsewhere), then the unit takes its place -> recurse. Prune when the moves used plus the fewest
    units still needed exceed the budget, or the excess left exceeds the room left below the level.

Every branch is checked on the state the moves before it left, so the moves found keep every rule
in order. The search is bounded by :data:`EXPANSIONS` filter runs per level; it answers "found"
or "not found within the bound", never a wrong plan.
"""

from __future__ import annotations

from collections.abc import Callable

from planners.ranking import rank
from planners.rebalance_run import RebalanceRun
from planners.rulebook import Ctx
from planners.state import EPS, FleetState
from planners.units import Unit

#: Filter runs (one unit on one node) per level searched.
EXPANSIONS = 400
#: Holes tried per unit, and unit sizes tried per node.
HOLES = 3
SIZES = 4

PeakMove = tuple[Unit, str, dict[str, str | None]]  # unit, destination, storages


def _excess(st: FleetState, node: str, level: float) -> float:
    return st.mem[node] - level * st.nodes[node].memory_mb


class _Search:
    """One level's search: a scratch state the branches apply and undo, and the moves so far."""

    def __init__(self, run: RebalanceRun, level: float, receivers: list[str]) -> None:
        self.run, self.level, self.receivers = run, level, receivers
        self.state = run.state.clone()
        self.ctx = Ctx(self.state)
        self.left = EXPANSIONS
        self.moves: list[PeakMove] = []
        self.taken: set[str] = set()
        #: per node, the units that may leave it, largest first (a unit that moved is taken: it
        #: never leaves its new node, so these lists stay right as the search moves units)
        self.on = {n: sorted(run.movable_on(n), key=lambda u: (-u.memory_mb, u.key)) for n in self.state.nodes}

    def over(self) -> list[str]:
        st = self.state
        return sorted((n for n in st.nodes if _excess(st, n, self.level) > EPS),
                      key=lambda n: (-_excess(st, n, self.level), n))

    def fewest_needed(self, over: list[str]) -> int:
        """The moves still needed at least (exactly a lower bound for single-container units; an
        affinity group counts all its members): per node over the level, its largest units until
        the excess is covered."""
        st, need = self.state, 0
        for node in over:
            excess = _excess(st, node, self.level)
            for unit in self._units(node):
                if excess <= EPS:
                    break
                excess -= unit.memory_mb
                need += len(unit.members)
            if excess > EPS:
                return self.run.budget + 1  # cannot be covered at all
        return need

    def room_below(self) -> float:
        st = self.state
        return sum(max(0.0, -_excess(st, n, self.level)) for n in self.receivers)

    def _units(self, node: str) -> list[Unit]:
        return [u for u in self.on[node] if u.key not in self.taken]

    def candidates(self, node: str, room: int, excess: float) -> list[Unit]:
        """One unit per memory size on ``node`` (the first by id), the smallest size covering
        ``excess`` first, then the larger-first rest, within the budget left."""
        by_size: dict[float, Unit] = {}
        for unit in self._units(node):  # by (-memory, key): the first of each size is the lowest id
            if len(unit.members) <= room:
                by_size.setdefault(unit.memory_mb, unit)
        sizes = sorted(by_size, key=lambda m: (m < excess, m if m >= excess else -m))
        return [by_size[m] for m in sizes[:SIZES]]

    def fits(self, unit: Unit, node: str) -> bool:
        st = self.state
        return st.mem[node] + unit.memory_mb <= self.level * st.nodes[node].memory_mb + EPS

    def holes(self, unit: Unit) -> list[str]:
        """Receivers ``unit`` fits at or below the level, tightest first."""
        st, home = self.state, self.state.where[unit.key].node
        fits = [n for n in self.run.landings(unit, self.receivers) if n != home and self.fits(unit, n)]
        return sorted(fits, key=lambda n: (-(st.mem[n] + unit.memory_mb) / st.nodes[n].memory_mb, n))

    def cramped(self, unit: Unit) -> list[str]:
        """Receivers ``unit`` does not fit now (over the level, or a filter such as disk refuses),
        least lacking memory first: where a make-room hop is tried."""
        st, home = self.state, self.state.where[unit.key].node
        lack = {}
        for n in self.run.landings(unit, self.receivers):
            if n != home and self.left > 0:
                if self.fits(unit, n):
                    self.left -= 1
                    if rank(self.ctx, unit, [n])[0]:
                        continue
                lack[n] = st.mem[n] + unit.memory_mb - self.level * st.nodes[n].memory_mb
        return sorted(lack, key=lambda n: (lack[n], n))[:HOLES]

    def search(self) -> bool:
        over = self.over()
        if not over:
            return True
        room = self.run.room() - sum(len(u.members) for u, _, _ in self.moves)
        if self.left <= 0 or self.fewest_needed(over) > room:
            return False
        if sum(_excess(self.state, n, self.level) for n in over) > self.room_below() + EPS:
            return False
        units = self.candidates(over[0], room, _excess(self.state, over[0], self.level))
        for unit in units:
            if self._onto(unit, self.holes(unit), self.search):
                return True
        for unit in units[:2]:  # a make-room hop: a unit leaves a cramped node for a hole first
            for dst in self.cramped(unit):
                lack = _excess(self.state, dst, self.level) + unit.memory_mb
                for other in self.candidates(dst, room - len(unit.members), max(lack, 0.0)):
                    def then(unit: Unit = unit, dst: str = dst) -> bool:
                        return self.fits(unit, dst) and self._onto(unit, [dst], self.search)
                    if self._onto(other, self.holes(other), then):
                        return True
        return False

    def _onto(self, unit: Unit, holes: list[str], then: Callable[[], bool]) -> bool:
        """``unit`` onto the first of ``holes`` the filters allow, then ``then()``; the next hole
        when that fails (up to :data:`HOLES` that pass the filters)."""
        tried = 0
        for dst in holes:
            if tried == HOLES or self.left <= 0:
                break
            self.left -= 1
            good, _ = rank(self.ctx, unit, [dst])
            if not good:
                continue
            tried += 1
            undo = [(ct, self.state.apply(ct, dst, good[0].storages.get(ct))) for ct in unit.members]
            self.moves.append((unit, dst, good[0].storages))
            self.taken.add(unit.key)
            if then():
                return True
            self.taken.discard(unit.key)
            self.moves.pop()
            for ct, old in reversed(undo):
                self.state.undo(ct, old)
        return False


def search_level(run: RebalanceRun, level: float,
                 receivers: list[str]) -> tuple[list[PeakMove], FleetState] | None:
    """Moves bringing every node to at most ``level`` within the budget, found by the bounded
    search (module docstring), and the state after them; or None."""
    search = _Search(run, level, receivers)
    return (search.moves, search.state) if search.search() else None
