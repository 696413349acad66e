"""Scorers: soft preferences among feasible nodes, one small named function each (lower = better).

Every scorer returns a penalty in the same unit — the increase of the fleet's size-weighted sum
of squared per-node utilisations (:mod:`planners.objective`) that landing a unit on a node
causes — so they add up without magic conversions. Squares, not a max, reward spreading: moving load from a node at 80 % to one at 40 %
lowers the sum, and the sum of squares is minimal when utilisations are equal (for equal nodes).

- ``memory_balance``: increase of ``sum(u_mem^2)`` at the destination (the figure plans are
  judged by); the source's decrease is the same for every destination, so it is left out.
- ``cpu_balance``: the same for configured CPUs over ``cpus x overcommit``, weighted by
  :data:`planners.objective.CPU_WEIGHT` — memory leads, CPU breaks near-ties (one resource at a time is what makes
  greedy balancers oscillate).
- ``move_cost``: bytes copied and predicted downtime, priced by the constants of
  :mod:`planners.objective`, so a near-equal node reachable over shared storage or a fast link
  wins, and a rebalance move must gain more than it costs.
"""

from __future__ import annotations

from collections.abc import Callable

from planners.objective import CPU_WEIGHT, expected_price
from planners.objective import move_cost as priced_move
from planners.rulebook import Ctx
from planners.state import FleetState
from planners.units import Unit

Storages = dict[str, str | None] | None
ScorerFn = Callable[[Ctx, Unit, str, Storages], float]


def squared_increase(load: float, add: float, size: float, mean_size: float) -> float:
    """Increase of ``(size/mean_size) * (load/size)^2`` when ``add`` arrives (the objective's term)."""
    after = load + add
    return (after * after - load * load) / (size * mean_size)


def _arriving_sum(st: FleetState, unit: Unit, node: str, field: str) -> float:
    """Sum of ``field`` over the members not yet on ``node`` (a plain loop: this runs for every
    node of the fleet in :func:`planners.ranking.best`, where a generator costs more than the sum)."""
    add = 0
    for ct in unit.members:
        if st.where[ct].node != node:
            add += getattr(st.containers[ct], field)
    return add


def memory_balance(ctx: Ctx, unit: Unit, node: str, storages: Storages) -> float:
    st = ctx.state
    add = _arriving_sum(st, unit, node, "memory_mb")
    return squared_increase(st.mem[node], add, st.nodes[node].memory_mb, st.mean_memory)


def cpu_balance(ctx: Ctx, unit: Unit, node: str, storages: Storages) -> float:
    st = ctx.state
    add = _arriving_sum(st, unit, node, "cpus")
    return CPU_WEIGHT * squared_increase(st.cpu[node], add, st.cpu_cap(node), st.mean_cpu_cap)


def move_cost(ctx: Ctx, unit: Unit, node: str, storages: Storages) -> float:
    st = ctx.state
    cost = 0
    for ct in unit.members:
        here = st.where[ct]
        if here.node != node:
            cost += (expected_price(st, ct, node) if storages is None
                     else priced_move(st, ct, here, node, storages.get(ct)))
    return cost


DEFAULT_SCORERS: tuple[tuple[str, ScorerFn], ...] = (
    ("memory_balance", memory_balance),
    ("cpu_balance", cpu_balance),
    ("move_cost", move_cost),
)
#: The scorers in use; :mod:`planners.score_many` computes ``DEFAULT_SCORERS`` over many nodes at once.
SCORERS = DEFAULT_SCORERS


def score(ctx: Ctx, unit: Unit, node: str, storages: Storages) -> float:
    """Total penalty of landing ``unit`` on ``node`` (lower is better)."""
    total = 0.0
    for _, fn in SCORERS:
        total += fn(ctx, unit, node, storages)
    return total
