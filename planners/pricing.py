"""Move prices for the rebalance searches: a cheap estimate to rank candidates, the exact one to
accept them.

Candidate moves are ranked by arithmetic before any filter runs, so their price must be known
without a storage choice: :class:`PriceEstimates` prices a unit's move to a typical destination
once per run (a unit moves at most once, so its source never changes while it is a candidate).
A chosen move is then re-priced exactly with the storages the disk rule picked
(:func:`exact_price`).
"""

from __future__ import annotations

from planners.objective import move_cost
from planners.state import FleetState
from planners.units import Unit


def exact_price(st: FleetState, unit: Unit, dst: str, storages: dict[str, str | None]) -> float:
    """The priced cost of moving ``unit`` to ``dst`` with its disks on ``storages``."""
    return sum(move_cost(st, ct, st.where[ct], dst, storages.get(ct)) for ct in unit.members)


class PriceEstimates:
    """Estimated move price per unit, cached for one run (see module docstring)."""

    def __init__(self, state: FleetState) -> None:
        self.state = state
        self._prices: dict[str, float] = {}

    def estimate(self, unit: Unit, dst: str) -> float:
        """The unit's move cost to ``dst`` as if its disk kept its storage id; the first ``dst`` asked
        stands for every destination."""
        if unit.key not in self._prices:
            st = self.state
            self._prices[unit.key] = sum(move_cost(st, ct, st.where[ct], dst, st.where[ct].storage)
                                         for ct in unit.members)
        return self._prices[unit.key]
