"""ferry's hard rules, each said once: the registry every planner stage draws from.

One :class:`~planners.rulebook.Rule` per rule, declared at the bottom in :data:`RULES`, with its
filter (and the reason a plan quotes), its violation detector, its CP-SAT constraint and its plan
check; see :mod:`planners.rulebook` for which stage uses which part. Filter order is the order of
:data:`RULES`: rules that decide whether a node is *allowed* first (cheap), capacity last (whether
an allowed node has *room*), so "largest free on an allowed node" is meaningful.

Adding a rule means adding its functions here and one ``Rule(...)`` line to :data:`RULES`
(example in ``planners/README.md``). The room rules (capacity, disk) live in
:mod:`planners.room_rules`.
"""

from __future__ import annotations

from collections.abc import Iterator

from fleet.crossings import cluster_of
from planners.exact_model import ExactModel
from planners.room_rules import (
    Key,
    Tally,
    capacity_exact,
    capacity_frees,
    capacity_limit,
    capacity_short,
    capacity_tally,
    cpu,
    disk,
    disk_exact,
    disk_frees,
    disk_limit,
    disk_on_target,
    disk_short,
    disk_tally,
    memory,
    overloads,
)
from planners.rulebook import Ctx, Registry, Rule
from planners.state import FleetState
from planners.units import ANY, Unit


# -- where a unit may go at all -----------------------------------------------------------------
def node_receives(ctx: Ctx, unit: Unit, node: str) -> str | None:
    n = ctx.state.nodes[node]
    if not n.online:
        return f"{node} is offline"
    if n.maintenance:
        return f"{node} is in maintenance"
    if n.cordoned:
        return f"{node} is {n.state or 'cordoned'} (node state): it receives nothing"
    return None


def not_excluded(ctx: Ctx, unit: Unit, node: str) -> str | None:
    if node in ctx.state.rules.exclude_nodes:
        return f"{node} is in exclude_nodes"
    return None


def not_emptying(ctx: Ctx, unit: Unit, node: str) -> str | None:
    if node in ctx.emptying:
        return f"{node} is being emptied"
    return None


def pin_to(ctx: Ctx, unit: Unit, node: str) -> str | None:
    if unit.allowed is not None and node not in unit.allowed:
        allowed = ", ".join(sorted(unit.allowed)) or "no node"
        return f"{unit.key} is pinned to {allowed}"
    return None


def outside_pins(state: FleetState, units: list[Unit], unit_of: dict[str, Unit]) -> Iterator[tuple[Unit, str]]:
    for unit in units:
        if unit.allowed is None:
            continue
        outside = [ct for ct in unit.members if state.where[ct].node not in unit.allowed]
        if outside:
            yield unit, f"{outside[0]} is on {state.where[outside[0]].node}, outside its pin_to"


def platform(ctx: Ctx, unit: Unit, node: str) -> str | None:
    """A unit stays on its platform unless the policy allows the crossing (a path exists)."""
    have = ctx.state.nodes[node].platform
    if unit.platform not in (have, ANY) and f"{unit.platform}->{have}" not in ctx.state.policy.platform_crossings:
        return f"needs a {unit.platform} node; {node} is {have}"
    return None


def _clusters(st: FleetState) -> dict[str, str]:
    """Each node's cluster in a mixed fleet (``cluster:<name>`` tag); empty outside one."""
    found = st.memo.get("cluster")
    if found is None:
        found = st.memo["cluster"] = {n: c for n, node in st.nodes.items() if (c := cluster_of(node))}
    return found


def cluster(ctx: Ctx, unit: Unit, node: str) -> str | None:
    """A unit stays in its cluster unless the policy allows the crossing (``SOURCE->TARGET`` or
    ``*`` in ``policy.cluster_crossings``): between two clusters of one platform a move runs by
    remote_migrate or dump and restore, slower than a migration inside one, and the container
    leaves its cluster's HA groups, backup jobs and firewall. A platform crossing (OpenVZ ->
    Proxmox) is the platform rule's to decide."""
    st = ctx.state
    of = _clusters(st)
    to = of.get(node)
    if to is None or "*" in st.policy.cluster_crossings:
        return None
    placed = st.where.get(unit.members[0])  # None: the bounds' stand-in unit, on no node
    home = placed.node if placed is not None else ""
    frm = of.get(home)
    if frm is None or frm == to or st.nodes[home].platform != st.nodes[node].platform:
        return None
    if f"{frm}->{to}" in st.policy.cluster_crossings:
        return None
    return f"{node} is in cluster {to}, {unit.key} in {frm} (policy.cluster_crossings allows none)"


# -- anti-affinity: members of a group on different nodes ---------------------------------------
def anti_affinity(ctx: Ctx, unit: Unit, node: str) -> str | None:
    st = ctx.state
    seen: set[int] = set()
    for ct in unit.members:
        for gi in st.anti_groups_of.get(ct, ()):
            if gi in seen:
                return f"{ct} is in anti-affinity with another member of its affinity group"
            seen.add(gi)
            here = st.anti_count.get((node, gi), 0) - (1 if st.where[ct].node == node else 0)
            if here > 0:
                others = sorted(m for m in st.rules.anti_affinity[gi]
                                if m != ct and st.where.get(m) is not None and st.where[m].node == node)
                return f"{node} already runs {', '.join(others)} (anti-affinity with {ct})"
    return None


def anti_affinity_breaches(state: FleetState, units: list[Unit],
                           unit_of: dict[str, Unit]) -> Iterator[tuple[Unit, str]]:
    """Members sharing a node: all but the first by id move."""
    for group in state.rules.anti_affinity:
        by_node: dict[str, list[str]] = {}
        for ct in sorted(group):
            if ct in state.where:
                by_node.setdefault(state.where[ct].node, []).append(ct)
        for node, cts in sorted(by_node.items()):
            for ct in cts[1:]:
                yield unit_of[ct], f"{ct} shares {node} with {cts[0]} (anti-affinity)"


def anti_affinity_tally(st: FleetState, ct: str, node: str, storage: str | None, copied: bool) -> Tally:
    return [(("anti_affinity", node, gi), 1) for gi in st.anti_groups_of.get(ct, ())]


def anti_affinity_limit(st: FleetState, key: Key) -> tuple[float, float]:
    _, node, gi = key
    return st.anti_count.get((node, gi), 0), 1  # type: ignore[call-overload]


def anti_affinity_exact(exact: ExactModel) -> None:
    """At most one member of a group per node, counting the members that do not move."""
    st = exact.state
    unit_of = {ct: u for u in exact.units for ct in u.members}
    for group in st.rules.anti_affinity:
        for n in st.nodes:
            fixed = sum(1 for ct in group if ct not in exact.moving and ct in st.where and st.where[ct].node == n)
            terms = [exact.x[(unit_of[ct].key, n)] for ct in sorted(group)
                     if ct in unit_of and (unit_of[ct].key, n) in exact.x]
            if terms:
                exact.model.add(sum(terms) <= max(1 - fixed, 0))


# -- zone spread: containers tagged zone_spread_<group> run in different zones -------------------
ZONE_TAG = "zone_spread_"


def _spread(st: FleetState) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(groups of each tagged container, members of each group, sorted), derived once per snapshot."""
    if "zone_spread" not in st.memo:
        members: dict[str, list[str]] = {}
        for ct in sorted(st.containers):
            for tag in st.containers[ct].tags:
                if tag.startswith(ZONE_TAG):
                    members.setdefault(tag[len(ZONE_TAG):], []).append(ct)
        groups = {g: tuple(m) for g, m in sorted(members.items()) if len(m) > 1}
        of: dict[str, tuple[str, ...]] = {}
        for g, cts in groups.items():
            for ct in cts:
                of[ct] = of.get(ct, ()) + (g,)
        st.memo["zone_spread"] = (of, groups)
    return st.memo["zone_spread"]


def _zone(st: FleetState, node: str) -> str:
    """A node's zone; a node without one is a zone of its own."""
    zone = st.nodes[node].zone
    return f"zone {zone}" if zone is not None else f"node {node} (no zone)"


def zone_spread(ctx: Ctx, unit: Unit, node: str) -> str | None:
    st = ctx.state
    of, groups = _spread(st)
    if not of:
        return None
    seen: set[str] = set()
    for ct in unit.members:
        for g in of.get(ct, ()):
            if g in seen:
                return f"{ct} is in zone spread {g} with another member of its affinity group"
            seen.add(g)
            zone = _zone(st, node)
            for other in groups[g]:
                if other not in unit.members and _zone(st, st.where[other].node) == zone:
                    return f"{node} is in {zone}, where {other} runs (zone spread {g} with {ct})"
    return None


def zone_crowding(st: FleetState, units: list[Unit], unit_of: dict[str, Unit]) -> Iterator[tuple[Unit, str]]:
    """Members of a group sharing a zone: all but the first by id move."""
    for g, cts in _spread(st)[1].items():
        first: dict[str, str] = {}
        for ct in cts:
            zone = _zone(st, st.where[ct].node)
            if zone in first:
                yield unit_of[ct], f"{ct} shares {zone} with {first[zone]} (zone spread {g})"
            else:
                first[zone] = ct


def zone_tally(st: FleetState, ct: str, node: str, storage: str | None, copied: bool) -> Tally:
    return [(("zone_spread", _zone(st, node), g), 1) for g in _spread(st)[0].get(ct, ())]


def zone_limit(st: FleetState, key: Key) -> tuple[float, float]:
    _, zone, g = key
    return sum(1 for ct in _spread(st)[1][g] if _zone(st, st.where[ct].node) == zone), 1  # type: ignore[index]


def zone_spread_exact(exact: ExactModel) -> None:
    """At most one member of a group per zone, counting the members that do not move."""
    st = exact.state
    unit_of = {ct: u for u in exact.units for ct in u.members}
    zones: dict[str, list[str]] = {}
    for n in st.nodes:
        zones.setdefault(_zone(st, n), []).append(n)
    for cts in _spread(st)[1].values():
        for zone, nodes in zones.items():
            fixed = sum(1 for ct in cts if ct not in exact.moving and _zone(st, st.where[ct].node) == zone)
            terms = [exact.x[(unit_of[ct].key, n)] for ct in cts if ct in unit_of
                     for n in nodes if (unit_of[ct].key, n) in exact.x]
            if terms:
                exact.model.add(sum(terms) <= max(1 - fixed, 0))


# -- affinity: a group ends on one node (units move whole, so only a snapshot can split one) -----
def split_groups(state: FleetState, units: list[Unit], unit_of: dict[str, Unit]) -> Iterator[tuple[Unit, str]]:
    for unit in units:
        nodes = sorted({state.where[ct].node for ct in unit.members})
        if len(nodes) > 1:
            yield unit, f"affinity group {unit.key} is split over {', '.join(nodes)}"


def groups_end_split(state: FleetState, moved: set[str]) -> list[str]:
    out = []
    for group in state.rules.affinity:
        if group & moved:
            nodes = sorted({state.where[ct].node for ct in group if ct in state.where})
            if len(nodes) > 1:
                out.append(f"affinity group {', '.join(sorted(group))} ends split over {', '.join(nodes)}")
    return out


#: Every hard rule, in filter order. Violations are fixed lowest ``fix_order`` first; CP-SAT
#: constraints are stated lowest ``model_order`` first.
RULES = Registry((
    Rule("receives", (("receives", node_receives),), bound="arrive"),
    Rule("not_excluded", (("not_excluded", not_excluded),), bound="arrive"),
    Rule("not_emptying", (("not_emptying", not_emptying),), bound="always"),
    Rule("pin_to", (("pin_to", pin_to),), static=True, violations=outside_pins, fix_order=20, bound="always"),
    Rule("platform", (("platform", platform),), static=True, bound="always"),
    Rule("cluster", (("cluster", cluster),), static=True, bound="always"),
    Rule("anti_affinity", (("anti_affinity", anti_affinity),), violations=anti_affinity_breaches,
         fix_order=10, constrain=anti_affinity_exact, model_order=20,
         tally=anti_affinity_tally, limit=anti_affinity_limit),
    Rule("zone_spread", (("zone_spread", zone_spread),), violations=zone_crowding, fix_order=15,
         constrain=zone_spread_exact, model_order=25, tally=zone_tally, limit=zone_limit),
    Rule("affinity", violations=split_groups, fix_order=30, check_end=groups_end_split),
    Rule("capacity", (("memory", memory), ("cpu", cpu)), decides="room", violations=overloads,
         fix_order=40, constrain=capacity_exact, model_order=10, tally=capacity_tally,
         limit=capacity_limit, short=capacity_short, frees=capacity_frees),
    Rule("disk", (("disk", disk),), decides="room", constrain=disk_exact, model_order=30,
         check_move=disk_on_target, tally=disk_tally, limit=disk_limit, short=disk_short, frees=disk_frees),
))
