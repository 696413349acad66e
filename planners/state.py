"""The mutable world a planner reasons about: who is where and how full every node is.

An :class:`~fleet.model.Inventory` is frozen; planning needs to try moves and undo them cheaply.
:class:`FleetState` indexes the snapshot once (O(containers)) into per-node loads — configured
memory, configured CPUs, disk per storage, members per anti-affinity group — and applies a move in
O(1 + groups of the container). Capacity limits follow ``contracts/inventory.md``: configured
memory within ``memory_mb x memory_overcommit``, configured CPUs within ``cpus x cpu_overcommit``,
disk within the storage's size; the policy's headroom is kept free on nodes that receive.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

from fleet.model import Container, Inventory, Node
from fleet.policy import Policy
from fleet.rules import EffectiveRules, effective_rules

#: Tolerance for float comparisons of loads, so that "exactly full" counts as fitting.
EPS = 1e-9


class Placement(NamedTuple):
    """Where one container is now, and on which storage of that node its disk lives (a tuple of
    strings: immutable, and left alone by the garbage collector, which a 20,000-container state
    would otherwise make scan tens of thousands of objects)."""

    node: str
    storage: str | None


class FleetState:
    """Per-node loads of a snapshot, updated as moves are applied (see module docstring)."""

    def __init__(self, inv: Inventory, policy: Policy, rules: EffectiveRules | None = None) -> None:
        self.inv = inv
        self.policy = policy
        self.rules = rules if rules is not None else effective_rules(inv)
        self.nodes: dict[str, Node] = {n.name: n for n in inv.nodes}
        self.containers: dict[str, Container] = {c.id: c for c in inv.containers}
        self.mem: dict[str, float] = {n.name: 0.0 for n in inv.nodes}
        self.cpu: dict[str, float] = {n.name: 0.0 for n in inv.nodes}
        self.cpu_used: dict[str, float] = {n.name: n.cpu_usage * n.cpus for n in inv.nodes}
        self.disk: dict[tuple[str, str], float] = {}
        for n in inv.nodes:
            for sid, st in n.storage.items():
                self.disk[(n.name, sid)] = st.used_gb
        # Objective weights (planners.objective): node size over the mean size, so that equal
        # utilisation everywhere is the optimum even when nodes differ in size.
        self.mean_memory = sum(n.memory_mb for n in inv.nodes) / max(1, len(inv.nodes))
        self.mean_cpu_cap = sum(self.cpu_cap(n.name) for n in inv.nodes) / max(1, len(inv.nodes))
        #: per node, the objective's denominators (RAM x mean RAM, CPU cap x mean CPU cap), said once
        #: because the objective's deltas run millions of times on a large evacuation
        self.mem_den: dict[str, float] = {n.name: n.memory_mb * self.mean_memory for n in inv.nodes}
        self.cpu_den: dict[str, float] = {n.name: self.cpu_cap(n.name) * self.mean_cpu_cap for n in inv.nodes}
        #: priced move costs by (container, source, destination class); see objective.expected_price
        self.expected_prices: dict[tuple, float] = {}
        #: indexes a rule derives from the snapshot alone (shared by clones), by the rule's name
        self.memo: dict[str, Any] = {}
        self.where: dict[str, Placement] = {}
        self.members: dict[str, list[str]] = {n.name: [] for n in inv.nodes}
        self.anti_groups_of: dict[str, tuple[int, ...]] = defaultdict(tuple)
        for gi, group in enumerate(self.rules.anti_affinity):
            for ct in sorted(group):
                self.anti_groups_of[ct] = self.anti_groups_of[ct] + (gi,)
        self.anti_count: dict[tuple[str, int], int] = defaultdict(int)
        self.affinity_of: dict[str, frozenset[str]] = {}
        for group in self.rules.affinity:
            for ct in group:
                self.affinity_of[ct] = group
        for c in inv.containers:
            self.where[c.id] = Placement(c.node, c.storage)
            self.mem[c.node] += c.memory_mb
            self.cpu[c.node] += c.cpus
            self.members[c.node].append(c.id)
            for gi in self.anti_groups_of.get(c.id, ()):
                self.anti_count[(c.node, gi)] += 1

    def clone(self) -> FleetState:
        """An independent copy (the snapshot, rules, indexes and price cache are shared; loads are copied)."""
        twin = object.__new__(FleetState)
        twin.__dict__.update(self.__dict__)
        twin.mem, twin.cpu, twin.cpu_used = dict(self.mem), dict(self.cpu), dict(self.cpu_used)
        twin.disk = dict(self.disk)
        twin.where = dict(self.where)
        twin.members = {n: list(cts) for n, cts in self.members.items()}
        twin.anti_count = defaultdict(int, self.anti_count)
        return twin

    # -- limits -------------------------------------------------------------------------------
    def mem_cap(self, node: str) -> float:
        """Configured memory a receiving node may hold: size x overcommit, less headroom."""
        p = self.policy
        return self.nodes[node].memory_mb * p.memory_overcommit * (1.0 - p.memory_headroom)

    def cpu_cap(self, node: str) -> float:
        return self.nodes[node].cpus * self.policy.cpu_overcommit

    def disk_cap(self, node: str, storage: str) -> float:
        return self.nodes[node].storage[storage].total_gb * (1.0 - self.policy.disk_headroom)

    def disk_free(self, node: str, storage: str) -> float:
        return self.disk_cap(node, storage) - self.disk[(node, storage)]

    def mem_util(self, node: str) -> float:
        """Configured memory over the node's RAM: the figure plans are judged by."""
        return self.mem[node] / self.nodes[node].memory_mb

    # -- moves --------------------------------------------------------------------------------
    def copies_disk(self, src: Placement, dst: Placement) -> bool:
        """Whether a move from ``src`` to ``dst`` copies (and so consumes) the container's disk.

        A disk on a shared storage (Ceph, NFS) that the destination mounts under the same id moves
        no bytes; every other move consumes the disk on the target storage and frees the source.
        """
        if src.node not in self.nodes:
            return dst.storage is not None  # a new container: its disk is created, not copied
        if src.storage is None or dst.storage is None:
            return False
        src_st = self.nodes[src.node].storage.get(src.storage)
        dst_st = self.nodes[dst.node].storage.get(dst.storage)
        shared = src_st is not None and src_st.shared and dst_st is not None and dst_st.shared
        return not (shared and src.storage == dst.storage)

    def apply(self, ct: str, dst: str, target_storage: str | None) -> Placement:
        """Move ``ct`` to ``dst`` (disk onto ``target_storage``); returns the old placement for undo."""
        old = self.where[ct]
        new = Placement(dst, target_storage)
        self._shift(ct, old, new, self.copies_disk(old, new))
        return old

    def undo(self, ct: str, old: Placement) -> None:
        """Reverse :meth:`apply`, given the placement it returned."""
        now = self.where[ct]
        self._shift(ct, now, old, self.copies_disk(old, now))

    def _shift(self, ct: str, frm: Placement, to: Placement, copied: bool) -> None:
        c = self.containers[ct]
        used = c.cpu_usage * c.cpus
        self.mem[frm.node] -= c.memory_mb
        self.cpu[frm.node] -= c.cpus
        self.cpu_used[frm.node] -= used
        self.mem[to.node] += c.memory_mb
        self.cpu[to.node] += c.cpus
        self.cpu_used[to.node] += used
        if copied:
            if (frm.node, frm.storage) in self.disk:
                self.disk[(frm.node, frm.storage)] -= c.disk_gb
            if (to.node, to.storage) in self.disk:
                self.disk[(to.node, to.storage)] += c.disk_gb
        self.members[frm.node].remove(ct)
        self.members[to.node].append(ct)
        for gi in self.anti_groups_of.get(ct, ()):
            self.anti_count[(frm.node, gi)] -= 1
            self.anti_count[(to.node, gi)] += 1
        self.where[ct] = to
