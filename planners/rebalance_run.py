"""One rebalance run's bookkeeping: the state, the units, what has moved and what may still move.

The violation fixes (:mod:`planners.rebalance`), the balance search (:mod:`planners.balance`) and
the ejection chains (:mod:`planners.chains`) all decide on this one object and record their moves
through :meth:`RebalanceRun.move`, so every decision sees the state the earlier ones left.
"""

from __future__ import annotations

from fleet.model import Inventory
from fleet.policy import Policy
from fleet.rules import effective_rules
from planners.pricing import PriceEstimates
from planners.rulebook import Ctx
from planners.rules import RULES
from planners.sequence import emit
from planners.state import FleetState
from planners.units import Unit, all_units
from planners.waves import Step

#: The coolest receiving nodes a balance move or chain may target.
COOL_NODES = 12


class RebalanceRun:
    """The state, the units and what has moved so far (see module docstring)."""

    def __init__(self, inv: Inventory, policy: Policy, cooling: set[str]) -> None:
        self.rules = effective_rules(inv)
        self.state = FleetState(inv, policy, self.rules)
        self.start = self.state.clone()
        self.ctx = Ctx(self.state)
        self.units = all_units(self.state)
        self.unit_of = {ct: u for u in self.units for ct in u.members}
        self.cooling = cooling
        self.moved: set[str] = set()
        self.steps: list[Step] = []
        self.prices = PriceEstimates(self.state)
        self._lands: dict[str, dict[str, bool]] = {}  # unit key -> node -> static rules' verdict
        #: unit key -> (reason, keys of its chain) for balance moves made as part of a chain
        self.chain_reasons: dict[str, tuple[str, tuple[str, ...]]] = {}
        limit = policy.max_moves
        self.budget = len(inv.containers) if limit is None else limit
        self.targets = [n.name for n in inv.nodes]
        #: After a peak-first stage (planners.peak): no balance move fills a node above this.
        self.peak_cap: float | None = None
        self.fix_count = 0  # the first steps, which fix violations

    def room(self) -> int:
        """Containers the move budget still allows."""
        return self.budget - len(self.steps)

    def may_move(self, unit: Unit) -> bool:
        """Movable, not moved yet, not cooling, and within the budget."""
        return (not unit.immovable and unit.key not in self.moved
                and not any(ct in self.cooling for ct in unit.members)
                and len(unit.members) <= self.room())

    def move(self, unit: Unit, node: str, storages: dict[str, str | None], why: str) -> None:
        emit(self.state, self.steps, unit, node, storages, why)
        self.moved.add(unit.key)

    def heat(self) -> tuple[list[str], list[str]]:
        """Nodes hottest first, and the :data:`COOL_NODES` coolest nodes that may receive."""
        st = self.state
        by_heat = sorted(st.nodes, key=lambda n: (-st.mem_util(n), n))
        receivers = [n for n in reversed(by_heat) if st.nodes[n].receives
                     and n not in st.rules.exclude_nodes][:COOL_NODES]
        return by_heat, receivers

    def landings(self, unit: Unit, nodes: list[str]) -> list[str]:
        """Those of ``nodes`` the cheap, state-independent rules (:attr:`Rule.static`) let ``unit``
        onto, in order: checked before any arithmetic. Their verdict never changes, so it is kept
        (the balance search asks again on every step)."""
        verdicts = self._lands.get(unit.key)
        if verdicts is None:
            verdicts = self._lands[unit.key] = {}
        out = []
        for node in nodes:
            ok = verdicts.get(node)
            if ok is None:
                ok = verdicts[node] = RULES.may_land(self.ctx, unit, node)
            if ok:
                out.append(node)
        return out

    def may_land(self, unit: Unit, dst: str) -> bool:
        return bool(self.landings(unit, [dst]))

    def price_estimate(self, unit: Unit, dst: str) -> float:
        return self.prices.estimate(unit, dst)

    def movable_on(self, node: str) -> list[Unit]:
        """Units wholly on ``node`` that may still move, each once, in id order."""
        out: dict[str, Unit] = {}
        st = self.state
        for ct in sorted(st.members[node]):
            unit = self.unit_of[ct]
            if unit.key not in out and self.may_move(unit) and all(
                    st.where[m].node == node for m in unit.members):
                out[unit.key] = unit
        return list(out.values())
