"""A proven lower bound on the peak memory utilisation any plan of the same kind can reach.

Plans state this bound next to their own peak, so a reader sees the gap to the optimum without
trusting the heuristic. Each term below holds for *every* placement that keeps the hard rules and
moves only the ``movable`` containers; the bound is their maximum:

1. fixed load: a container that cannot move stays, so ``peak >= fixed_n / mem_n`` on every node;
2. water level: the movable memory ``T`` must fit somewhere. At a peak ``t`` node ``n`` holds at
   most ``min(t*mem_n, max(cap_n, now_n)) - fixed_n`` if it may receive,
   ``min(t*mem_n, now_n) - fixed_n`` if it may only keep what it has, nothing if it is being
   emptied (the rules with a ``bound`` say which: ``RULES.bound_allows``); the smallest ``t``
   whose total reaches ``T`` (found by bisection, a monotone function) bounds the peak;
3. biggest units: a unit lands on *some* node the rules with a ``bound`` allow, so
   ``peak >= min_n (fixed_n + size)/mem_n`` (checked for the largest units whose members share a
   node now; a subset still gives a valid bound).
"""

from __future__ import annotations

from collections.abc import Collection

from planners.rulebook import Ctx
from planners.rules import RULES
from planners.state import FleetState
from planners.units import ANY, Unit

#: How many of the largest units term 3 examines (the bound stays valid for any subset).
LARGEST_UNITS = 32


def _fixed_load(state: FleetState, movable: Collection[str]) -> dict[str, float]:
    """Memory on each node that no plan of this kind may move (O(movable), not O(containers))."""
    fixed = dict(state.mem)
    for ct in movable:
        fixed[state.where[ct].node] -= state.containers[ct].memory_mb
    return fixed


#: Any unit, for the rules that speak about a node alone (``bound="arrive"``, and "always"
#: rules such as not_emptying, which pass for a unit with no pins on any platform).
_ANY_UNIT = Unit(members=("",), memory_mb=0.0, cpus=0.0, platform=ANY, allowed=None, immovable=())


def _water_level(ctx: Ctx, fixed: dict[str, float], total: float, low: float) -> float:
    state = ctx.state
    # Per node: its size and what it may hold at most; a node may always keep what it has (even
    # above its cap, if nothing can leave), a node no unit may end on holds nothing.
    tops = []
    for name, node in state.nodes.items():
        if not RULES.bound_allows(ctx, _ANY_UNIT, name, holds_now=True):
            continue
        receives = RULES.bound_allows(ctx, _ANY_UNIT, name, holds_now=False)
        top = max(state.mem_cap(name), state.mem[name]) if receives else state.mem[name]
        tops.append((node.memory_mb, top, fixed[name]))

    def room(t: float) -> float:
        out = 0.0
        for size, top, fix in tops:
            out += max(0.0, min(t * size, top) - fix)
        return out

    if total <= 0 or room(low) >= total:
        return low
    high = max(low, 1.0) * 2
    for _ in range(60):
        if room(high) >= total:
            break
        high *= 2
    else:
        return low  # even unbounded room does not suffice: capacity binds, not the peak
    if room(high) < total:
        return low
    for _ in range(50):
        mid = (low + high) / 2
        if room(mid) >= total:
            high = mid
        else:
            low = mid
    return low


def _unit_term(ctx: Ctx, fixed: dict[str, float], unit: Unit) -> float:
    """The best utilisation of any node every plan may end ``unit`` on (``RULES.bound_allows``):
    nodes are visited lowest utilisation first, so the first allowed one is the minimum."""
    state = ctx.state
    holder = {state.where[ct].node for ct in unit.members}
    for util, name in sorted(((fixed[name] + unit.memory_mb) / node.memory_mb, name)
                             for name, node in state.nodes.items()):
        if RULES.bound_allows(ctx, unit, name, holder == {name}):
            return util
    return 0.0


def lower_bound_peak(state: FleetState, movable: Collection[str], units: list[Unit],
                     emptying: Collection[str] = ()) -> float:
    """Max of the three terms of the module docstring, for moves of ``movable`` only."""
    fixed = _fixed_load(state, movable)
    bound = max((fixed[n] / node.memory_mb for n, node in state.nodes.items()), default=0.0)
    total = sum(state.containers[ct].memory_mb for ct in movable)
    ctx = Ctx(state, frozenset(emptying))
    bound = max(bound, _water_level(ctx, fixed, total, bound))
    # A group split over nodes may stay split (a rebalance with no budget left to join it), so
    # term 3 only counts units whose members share a node now.
    whole = (u for u in units if not u.immovable and len({state.where[ct].node for ct in u.members}) == 1)
    largest = sorted(whole, key=lambda u: (-u.memory_mb, u.key))
    for unit in largest[:LARGEST_UNITS]:
        bound = max(bound, _unit_term(ctx, fixed, unit))
    return bound
