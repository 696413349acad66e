"""rebalance: fix rule violations and overloads, then spread load with as few, cheap moves as pay.

    snapshot --> violations (anti-affinity, pin_to, split affinity, over capacity) --> fix moves
                                                                                        |
    aggressiveness >= 2:  repeat until max_moves or no gain >= threshold:               v
        hottest nodes x their movable units x coolest nodes --delta--> best few --filters--> apply
        hottest node stuck (no single paying move leaves it), or no single move pays:   |
        ejection chain of 2-3 moves (planners.chains), applied whole, hop by hop -----> apply
                                                                                        |
    refine (planners.refine): local search [+ CP-SAT with solver="cp-sat"], re-sequenced,
    kept only if complete, within budget and better                                     |
                                                                 steps (in a safe order)

Every greedy move is decided on the state left by the moves before it, so the decision order is
an execution order in which every prefix keeps the rules; refined plans are re-sequenced. A unit moves at most once per plan and not
at all while cooling down (moved within ``policy.cooldown_hours``), and a balance move must gain
more than ``policy.min_gain`` times the aggressiveness factor *after* paying its copy and downtime
cost (a chain: times the number of its moves). Every accepted move or chain lowers the
objective, so repeated runs never return to an earlier placement; on a balanced fleet a second
run plans nothing, so plans never ping-pong.

Aggressiveness (like VMware DRS): 1 = only fix violations and overloads; 2..5 accept balance moves
whose gain is at least 2, 1, 1/2, 1/4 x ``min_gain``. Gain is the drop of the objective
(:mod:`planners.objective`; moving 3 % of a node's RAM from a node at 80 % to an equal one at
50 % gains 2 x 0.03 x 0.30 - 2 x 0.03^2 = 0.016).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Literal

from fleet.errors import InputError
from fleet.model import Inventory
from fleet.plan import Goal, Plan
from fleet.policy import Policy
from fleet.rules import effective_rules
from planners.assemble import build_plan
from planners.chains import Chain, best_chain
from planners.filters import Ctx
from planners.objective import CPU_WEIGHT, move_cost
from planners.ranking import best, rank
from planners.refine import refine_exact, refine_local
from planners.sequence import emit
from planners.state import FleetState
from planners.units import Unit, all_units
from planners.violations import violations
from planners.waves import Step

#: Gain threshold per aggressiveness level, in multiples of policy.min_gain (None: fixes only).
THRESHOLD_FACTOR = {1: None, 2: 2.0, 3: 1.0, 4: 0.5, 5: 0.25}
#: Hottest source nodes and coolest destination nodes examined per balance move.
HOT_NODES = 6
COOL_NODES = 12
#: Candidate moves checked against the filters per balance step, best first.
CHECKED = 16


def _cooling(inv: Inventory, policy: Policy, last_moved: Mapping[str, datetime] | None,
             now: datetime | None) -> set[str]:
    """Containers moved within the cooldown. ``now`` defaults to the snapshot's ``taken_at``;
    with neither, every container in ``last_moved`` counts as cooling (the safe side)."""
    if not last_moved:
        return set()
    if now is None and inv.taken_at:
        now = datetime.fromisoformat(inv.taken_at.replace("Z", "+00:00"))
    if now is None:
        return set(last_moved)
    window = timedelta(hours=policy.cooldown_hours)
    out = set()
    for ct, when in last_moved.items():
        if (when.tzinfo is None) != (now.tzinfo is None):
            when = when.replace(tzinfo=now.tzinfo)
        if now - when < window:
            out.add(ct)
    return out


def _harder(st: FleetState, unit: Unit, stuck: Unit) -> bool:
    """Whether lone container ``unit`` fails every filter ``stuck`` (a lone container with no
    anti-affinity that fits no node) failed: same node, storage and platform, no more allowed
    nodes, at least as much memory, CPU and disk. Each filter is then at least as strict for it."""
    a, b = st.containers[unit.key], st.containers[stuck.key]
    return (len(unit.members) == 1 and st.where[a.id] == st.where[b.id]
            and unit.platform == stuck.platform
            and (stuck.allowed is None or (unit.allowed is not None and unit.allowed <= stuck.allowed))
            and a.memory_mb >= b.memory_mb and a.cpus >= b.cpus and a.disk_gb >= b.disk_gb)


class Rebalancer:
    """One rebalance run: the state, the units and what has moved so far."""

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
        self._prices: dict[str, float] = {}
        #: unit key -> (reason, keys of its chain) for balance moves made as part of a chain
        self.chain_reasons: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.chain_tried: set[str] = set()  # hottest nodes already offered a peak-first chain
        limit = policy.max_moves
        self.budget = len(inv.containers) if limit is None else limit
        self.targets = [n.name for n in inv.nodes]

    def may_move(self, unit: Unit) -> bool:
        return (not unit.immovable and unit.key not in self.moved
                and not any(ct in self.cooling for ct in unit.members)
                and len(unit.members) <= self.budget - len(self.steps))

    def move(self, unit: Unit, node: str, storages: dict[str, str | None], why: str) -> None:
        emit(self.state, self.steps, unit, node, storages, why)
        self.moved.add(unit.key)

    def fix_violations(self) -> None:
        """Move each violating unit to its best node. A lone container that found no node makes
        every container that is harder to place (see :func:`_harder`) skip the search until the
        next move changes the state: an overloaded fleet can list thousands of them."""
        stuck: dict[str, list[Unit]] = {}  # home node -> lone containers that found no node
        for unit, why in violations(self.state, self.units):
            # A hard-rule violation outranks the cooldown; pinned/ignored units still never move.
            if unit.immovable or unit.key in self.moved or len(unit.members) > self.budget - len(self.steps):
                continue
            homes = {self.state.where[ct].node for ct in unit.members}
            stay = homes.pop() if len(homes) == 1 else None
            if any(_harder(self.state, unit, other) for other in stuck.get(stay or "", ())):
                continue
            chosen, _ = best(self.ctx, unit, [n for n in self.targets if n != stay], explain=False)
            if chosen is not None:
                self.move(unit, chosen.node, chosen.storages, f"fix: {why}")
                stuck.clear()
            elif stay is not None and len(unit.members) == 1 and not self.state.anti_groups_of.get(unit.key):
                stuck.setdefault(stay, []).append(unit)

    def balance(self, threshold: float) -> None:
        """Best single moves while one pays, peak first: when the hottest node cannot shed load by
        any single paying move, an ejection chain for it (:mod:`planners.chains`) comes first, once
        per node; when no single move pays anywhere, the best chain from any hot node."""
        while len(self.steps) < self.budget:
            hot, cool = self.heat()
            top = hot[0]
            found = self._best_balance_move(threshold, hot[:HOT_NODES])
            if top not in self.chain_tried and (found is None or (
                    self.state.where[found[0].key].node != top
                    and self._best_balance_move(threshold, [top]) is None)):
                self.chain_tried.add(top)
                if self._chain(best_chain(self, [top], cool, threshold, self.budget - len(self.steps))):
                    continue
            if found is not None:
                unit, node, storages, gain = found
                self.move(unit, node, storages, f"rebalance (gain {gain:.3f})")
                continue
            if not self._chain(best_chain(self, hot, cool, threshold, self.budget - len(self.steps))):
                return

    def _chain(self, chain: Chain | None) -> bool:
        """Apply an ejection chain hop by hop (ejections first); False when there is none."""
        if chain is None:
            return False
        keys = tuple(u.key for u, _, _ in chain.hops)
        for (unit, _, dst), storages, why in zip(chain.hops, chain.storages, chain.reasons(), strict=True):
            self.move(unit, dst, storages, why)
            self.chain_reasons[unit.key] = (why, keys)
        return True

    def heat(self) -> tuple[list[str], list[str]]:
        """Nodes hottest first, and the :data:`COOL_NODES` coolest nodes that may receive."""
        st = self.state
        by_heat = sorted(st.nodes, key=lambda n: (-st.mem_util(n), n))
        receivers = [n for n in reversed(by_heat) if st.nodes[n].receives
                     and n not in st.rules.exclude_nodes][:COOL_NODES]
        return by_heat, receivers

    def may_land(self, unit: Unit, dst: str) -> bool:
        """The cheap, state-independent rules (pin_to, platform), before any arithmetic."""
        return (unit.allowed is None or dst in unit.allowed) and unit.platform == self.state.nodes[dst].platform

    def price_estimate(self, unit: Unit, dst: str) -> float:
        """The unit's move cost to a typical destination, cached: a unit moves at most once, so
        its source never changes while it is a candidate. Exact costs are checked before a move."""
        if unit.key not in self._prices:
            st = self.state
            self._prices[unit.key] = sum(move_cost(st, ct, st.where[ct], dst, st.where[ct].storage)
                                         for ct in unit.members)
        return self._prices[unit.key]

    def _best_balance_move(self, threshold: float,
                           sources: list[str]) -> tuple[Unit, str, dict[str, str | None], float] | None:
        """The best-gain feasible move from the ``sources`` (hot nodes) to the coolest, or None.

        The gain is the objective's drop (:func:`planners.objective.relocation_delta`, expanded
        here: the source's share once per unit, the destination's per candidate) less the move's
        estimated price; the best :data:`CHECKED` candidates then run the filters and the exact price.
        """
        st = self.state
        _, receivers = self.heat()
        weights = {n: (1.0 / (st.nodes[n].memory_mb * st.mean_memory),
                       CPU_WEIGHT / (st.cpu_cap(n) * st.mean_cpu_cap)) for n in sources + receivers}
        candidates = []
        for src in sources:
            wm, wc = weights[src]
            mem, cpu = st.mem[src], st.cpu[src]
            for unit in self.movable_on(src):
                m, c = unit.memory_mb, unit.cpus
                relief = (2 * mem * m - m * m) * wm + (2 * cpu * c - c * c) * wc
                relief -= self.price_estimate(unit, receivers[0])
                for dst in receivers:
                    if dst == src or not self.may_land(unit, dst):
                        continue
                    dm, dc = weights[dst]
                    gain = relief - (2 * st.mem[dst] * m + m * m) * dm - (2 * st.cpu[dst] * c + c * c) * dc
                    if gain >= threshold:
                        candidates.append((gain, unit.key, dst, unit))
        candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
        for gain, _, dst, unit in candidates[:CHECKED]:
            good, _ = rank(self.ctx, unit, [dst])
            if not good:
                continue
            storages = good[0].storages
            net = gain + self.price_estimate(unit, dst) - sum(
                move_cost(st, ct, st.where[ct], dst, storages.get(ct)) for ct in unit.members)
            if net >= threshold:
                return unit, dst, storages, net
        return None

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


def plan_rebalance(inv: Inventory, policy: Policy, *, last_moved: Mapping[str, datetime] | None = None,
                   now: datetime | None = None, solver: Literal["greedy", "cp-sat"] = "greedy",
                   time_limit_s: float = 10.0) -> Plan:
    """Fix violations, then balance memory (see module docstring).

    The greedy balance moves are then refined by local search (same units, better destinations,
    re-sequenced); ``solver="cp-sat"`` also asks CP-SAT for the best placement with the same move
    budget (deterministic time limit ``time_limit_s``; for small and medium fleets).
    """
    if solver not in ("greedy", "cp-sat"):
        raise InputError("solver", solver, "must be greedy or cp-sat")
    run = Rebalancer(inv, policy, _cooling(inv, policy, last_moved, now))
    run.fix_violations()
    after_fixes, fixes = run.state.clone(), list(run.steps)
    factor = THRESHOLD_FACTOR[policy.aggressiveness]
    if factor is not None:
        run.balance(max(policy.min_gain * factor, 1e-9))
        balance = run.steps[len(fixes):]
        room = run.budget - len(fixes)
        fixed = {run.unit_of[s.ct].key for s in fixes}
        moved = [run.unit_of[ct] for ct in dict.fromkeys(s.ct for s in balance)]
        movable = [u for u in run.units if not u.immovable and u.key not in fixed
                   and not any(ct in run.cooling for ct in u.members)]
        better = refine_local(after_fixes, balance, moved, movable, room, run.chain_reasons)
        balance = better if better is not None else balance
        if solver == "cp-sat":
            free = [u for u in movable if len({after_fixes.where[ct].node for ct in u.members}) == 1]
            exact = refine_exact(after_fixes, balance, free, room, time_limit_s)
            balance = exact if exact is not None else balance
        run.steps = fixes + balance
    movable = {c.id for c in inv.containers
               if not run.rules.immovable(c.id) and c.id not in run.cooling}
    return build_plan(run.start, Goal(kind="rebalance"), run.steps, [],
                      movable=movable, units=[u for u in run.units if u.key in movable])
