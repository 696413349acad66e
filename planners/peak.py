"""Peak first: the lowest memory peak a rebalance can reach within its move budget.

The balance search (:mod:`planners.balance`) minimises the size-weighted sum of squares. On nodes
of mixed sizes that optimum may leave one node fuller than needed (a full 64 GiB node weighs less
than a 256 GiB node at 85 %). This stage answers the peak first, like the "lower the maximum,
then spread" order of lexicographic balancing:

    target level T (a grid from the water level to the current peak, then bisection)
      every node above T, hottest first: shed units until it is at or below T --
        the smallest unit that covers the excess alone, else the largest that fits somewhere,
        onto the coolest nodes that stay at or below T (static rules first, then every filter)
      --> feasible within the budget? lower T : raise T
    below the lowest feasible T (or the peak): bisection with the bounded search of
      planners.peak_search, which packs the hot nodes' units into the holes jointly
    --> the moves of the lowest feasible T, in the order found (each checked on the state the
        previous ones left, so every prefix keeps the rules)

Every loop is bounded (:data:`GRID` + :data:`STEPS` levels, :data:`UNITS_TRIED` units per excess,
:data:`CHECKED` destinations per unit; :data:`SEARCH_STEPS` levels of at most
:data:`planners.peak_search.EXPANSIONS` filter runs each), so the cost is a few thousand
arithmetic checks and a few thousand filter runs on the fleets this is for (see
:data:`MAX_CONTAINERS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from planners.peak_search import PeakMove, search_level
from planners.ranking import rank
from planners.rebalance_run import RebalanceRun
from planners.rulebook import Ctx
from planners.state import EPS, FleetState, Placement
from planners.units import Unit

#: Levels scanned between the water level and the peak, then bisection steps below the lowest
#: reachable one.
GRID = 16
STEPS = 6
#: Bisection steps of the bounded search below the greedy's lowest level.
SEARCH_STEPS = 6
#: The peak must fall by at least this much utilisation for the stage to move anything.
MIN_PEAK_GAIN = 0.005
#: Units examined per excess to shed, and destinations run through the filters per unit.
UNITS_TRIED = 8
CHECKED = 4
#: Fleets larger than this keep the balance search alone (its peak-first moves, bounded lists).
MAX_CONTAINERS = 2000


@dataclass(frozen=True)
class Strategy:
    """How a level is reached: which unit leaves first and where it goes. Each level is tried with
    every strategy (:data:`STRATEGIES`) and the one needing the fewest moves wins."""

    cover_first: bool  # the smallest unit that covers the excess alone, before the largest ones
    fullest: bool  # the fullest node that stays below the level (keeps big holes for big units)


STRATEGIES = tuple(Strategy(c, f) for c in (True, False) for f in (False, True))


@dataclass(frozen=True)
class PeakPlan:
    """Moves that bring every node to at most ``level`` (the fleet's peak afterwards)."""

    moves: list[PeakMove]
    level: float


def fleet_peak(st: FleetState) -> float:
    return max(st.mem_util(n) for n in st.nodes)


def lowest_peak(run: RebalanceRun) -> PeakPlan | None:
    """The moves reaching the lowest peak found within the budget, or None when the peak cannot
    fall by :data:`MIN_PEAK_GAIN`. Reachability is a heuristic's, not monotone in the level, so
    the levels are first scanned on a grid (:data:`GRID` levels from the water level up), then the
    gap below the lowest reachable one is bisected."""
    st = run.state
    top = fleet_peak(st) - MIN_PEAK_GAIN
    water = min(_water_level(st), top)
    levels = [water + (top - water) * i / GRID for i in range(GRID + 1)]
    best, below = None, water
    for i, level in enumerate(levels):
        best = _reach(run, level)
        if best is not None:
            below = levels[i - 1] if i else level
            break
    if best is not None:
        lo, hi = below, best.level
        for _ in range(STEPS):
            if hi - lo < 1e-4:
                break
            mid = (lo + hi) / 2
            found = _reach(run, mid)
            if found is None:
                lo = mid
            else:
                best, hi = found, found.level
    return _searched(run, water, best, top)


def _searched(run: RebalanceRun, water: float, best: PeakPlan | None, top: float) -> PeakPlan | None:
    """Below the greedy's lowest level (or the peak), levels bisected with the bounded search of
    :mod:`planners.peak_search` (packing the units into the holes jointly)."""
    lo, hi = water, top if best is None else best.level
    receivers = _receivers(run)
    for _ in range(SEARCH_STEPS):
        if hi - lo < 1e-4:
            break
        mid = (lo + hi) / 2
        found = search_level(run, mid, receivers)
        if found is None:
            lo = mid
        else:
            best = PeakPlan(found[0], fleet_peak(found[1]))
            hi = best.level
    return best


def _water_level(st: FleetState) -> float:
    """Every node at the same utilisation: no plan's peak is lower (rules ignored)."""
    return sum(st.mem.values()) / sum(n.memory_mb for n in st.nodes.values())


def _receivers(run: RebalanceRun) -> list[str]:
    st = run.state
    return [n for n in st.nodes if st.nodes[n].receives and n not in st.rules.exclude_nodes]


def _reach(run: RebalanceRun, level: float) -> PeakPlan | None:
    """The fewest moves any strategy needs to bring every node to at most ``level`` within the
    budget (ties: the first strategy), or None."""
    found = [p for p in (_reach_with(run, level, how) for how in STRATEGIES) if p is not None]
    return min(found, key=lambda p: sum(len(u.members) for u, _, _ in p.moves), default=None)


def _reach_with(run: RebalanceRun, level: float, how: Strategy) -> PeakPlan | None:
    """Moves bringing every node to at most ``level`` within the budget, or None."""
    scratch = run.state.clone()
    ctx = Ctx(scratch)
    receivers = _receivers(run)
    moves: list[PeakMove] = []
    used = 0
    hot = sorted((n for n in scratch.nodes if scratch.mem_util(n) > level + EPS),
                 key=lambda n: (-scratch.mem_util(n), n))
    taken: set[str] = set()
    for node in hot:
        units = [u for u in run.movable_on(node) if u.key not in taken]
        while scratch.mem[node] > level * scratch.nodes[node].memory_mb + EPS:
            excess = scratch.mem[node] - level * scratch.nodes[node].memory_mb
            found = _shed_one(run, ctx, units, excess, level, receivers, run.room() - used, how)
            chain = [found] if found is not None else _shed_by_chain(
                run, ctx, units, excess, level, receivers, run.room() - used, taken, how)
            if not chain:
                return None
            for unit, dst, storages in chain:
                if found is not None:  # a chain's moves are applied already
                    for ct in unit.members:
                        scratch.apply(ct, dst, storages.get(ct))
                taken.add(unit.key)
                used += len(unit.members)
            moves.extend(chain)
            units.remove(chain[-1][0])
    return PeakPlan(moves, fleet_peak(scratch))


def _shed_one(run: RebalanceRun, ctx: Ctx, units: list[Unit], excess: float, level: float,
              receivers: list[str], room: int, how: Strategy) -> PeakMove | None:
    """One unit off a node over ``level``: the smallest that covers ``excess`` alone, else the
    largest; onto the coolest receiver that stays at or below ``level`` and passes every filter."""
    st = ctx.state
    for unit in _shed_order(units, excess, room, how):
        home = st.where[unit.key].node
        fits = [n for n in run.landings(unit, receivers)
                if n != home and st.mem[n] + unit.memory_mb <= level * st.nodes[n].memory_mb + EPS]
        sign = -1.0 if how.fullest else 1.0
        fits.sort(key=lambda n: (sign * (st.mem[n] + unit.memory_mb) / st.nodes[n].memory_mb, n))
        for dst in fits[:CHECKED]:
            good, _ = rank(ctx, unit, [dst])
            if good:
                return unit, dst, good[0].storages
    return None


def _shed_order(units: list[Unit], excess: float, room: int, how: Strategy) -> list[Unit]:
    """Units in the order they are tried: most memory per moved container first, or
    (``how.cover_first``) the smallest that covers ``excess`` alone with the fewest containers
    first, then the others by memory per container. The budget counts containers."""
    def per_move(u: Unit) -> float:
        return -u.memory_mb / len(u.members)

    if how.cover_first:
        order = sorted(units, key=lambda u: (u.memory_mb < excess, len(u.members) if u.memory_mb >= excess else 0,
                                             u.memory_mb if u.memory_mb >= excess else per_move(u), u.key))
    else:
        order = sorted(units, key=lambda u: (per_move(u), -u.memory_mb, u.key))
    return [u for u in order if len(u.members) <= room][:UNITS_TRIED]


def _shed_by_chain(run: RebalanceRun, ctx: Ctx, units: list[Unit], excess: float, level: float,
                   receivers: list[str], room: int, taken: set[str], how: Strategy) -> list[PeakMove]:
    """A unit that fits below ``level`` on no node as it is: make room on the node it fits best
    (units leave it for other nodes below ``level``), then move it there. The moves are applied to
    ``ctx.state``, ejections first; [] (and nothing applied) when no such chain passes the filters."""
    st = ctx.state
    for unit in _shed_order(units, excess, room, how):
        home = st.where[unit.key].node
        dests = [n for n in run.landings(unit, receivers) if n != home]
        dests.sort(key=lambda n: (st.mem[n] + unit.memory_mb - level * st.nodes[n].memory_mb, n))
        for dst in dests[:CHECKED]:
            chain = _make_room(run, ctx, unit, dst, level, receivers, room - len(unit.members), taken, how)
            if chain:
                return chain
    return []


def _make_room(run: RebalanceRun, ctx: Ctx, unit: Unit, dst: str, level: float, receivers: list[str],
               room: int, taken: set[str], how: Strategy) -> list[PeakMove]:
    """Ejections from ``dst`` until ``unit`` fits there below ``level``, then ``unit``'s move."""
    st = ctx.state
    others = [v for v in run.movable_on(dst) if v.key not in taken and v.key != unit.key]
    chain: list[PeakMove] = []
    undo: list[tuple[str, Placement]] = []
    while True:
        need = st.mem[dst] + unit.memory_mb - level * st.nodes[dst].memory_mb
        if need <= EPS:
            good, _ = rank(ctx, unit, [dst])
            if good:
                for ct in unit.members:
                    undo.append((ct, st.apply(ct, dst, good[0].storages.get(ct))))
                return [*chain, (unit, dst, good[0].storages)]
        used = sum(len(v.members) for v, _, _ in chain)
        found = None if need <= EPS else _shed_one(run, ctx, others, need, level, receivers, room - used, how)
        if found is None:
            for ct, old in reversed(undo):
                st.undo(ct, old)
            return []
        for ct in found[0].members:
            undo.append((ct, st.apply(ct, found[1], found[2].get(ct))))
        others.remove(found[0])
        chain.append(found)
