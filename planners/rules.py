"""ferry's hard rules, each said once: the registry every planner stage draws from.

One :class:`~planners.rulebook.Rule` per rule, declared at the bottom in :data:`RULES`, with its
filter (and the reason a plan quotes), its violation detector, its CP-SAT constraint and its plan
check; see :mod:`planners.rulebook` for which stage uses which part. Filter order is the order of
:data:`RULES`: rules that decide whether a node is *allowed* first (cheap), capacity last (whether
an allowed node has *room*), so "largest free on an allowed node" is meaningful.

Adding a rule means adding its functions here and one ``Rule(...)`` line to :data:`RULES`
(example in ``planners/README.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator

from planners.exact_model import GRAIN_MB, ExactModel, grains
from planners.objective import expected_copy
from planners.rulebook import Ctx, FilterFn, Registry, Rule
from planners.state import EPS, FleetState, Placement
from planners.storage import assign_storage
from planners.units import ANY, Unit, arriving

GIB = 1024.0
Key = tuple[Hashable, ...]
Tally = list[tuple[Key, float]]


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


# -- capacity: configured memory and CPUs within size x overcommit (less headroom to receive) ----
def _room_filter(name: str, field: str, load: Callable[[FleetState], dict[str, float]],
                 cap: Callable[[FleetState, str], float],
                 reason: Callable[[FleetState, str, float, float], str]) -> FilterFn:
    """A filter: what the members arriving on a node need of ``field`` must fit what it has free."""
    def check(ctx: Ctx, unit: Unit, node: str) -> str | None:
        st = ctx.state
        need = sum(getattr(st.containers[ct], field) for ct in arriving(st, unit, node))
        free = cap(st, node) - load(st)[node]
        return reason(st, node, need, free) if need > free + EPS else None
    check.__name__ = check.__qualname__ = name
    return check


memory = _room_filter(
    "memory", "memory_mb", lambda st: st.mem, FleetState.mem_cap,
    lambda st, node, need, free: f"needs {need / GIB:.1f} GiB RAM; {node} has {max(free, 0) / GIB:.1f} GiB free")
cpu = _room_filter(
    "cpu", "cpus", lambda st: st.cpu, FleetState.cpu_cap,
    lambda st, node, need, free: (f"needs {need:g} CPUs; {node} has {max(free, 0):g} free "
                                  f"(overcommit {st.policy.cpu_overcommit:g})"))


def overloads(state: FleetState, units: list[Unit], unit_of: dict[str, Unit]) -> Iterator[tuple[Unit, str]]:
    """Nodes over size x overcommit (no headroom): their smallest movable units until they fit."""
    for name, node in state.nodes.items():
        mem_limit = node.memory_mb * state.policy.memory_overcommit
        cpu_limit = state.cpu_cap(name)
        excess_mem = state.mem[name] - mem_limit
        excess_cpu = state.cpu[name] - cpu_limit
        if excess_mem <= EPS and excess_cpu <= EPS:
            continue
        what = (f"configured memory {state.mem[name] / 1024:.0f} GiB > {mem_limit / 1024:.0f} GiB"
                if excess_mem > EPS else f"configured CPUs {state.cpu[name]:g} > {cpu_limit:g}")
        on_node = sorted({unit_of[ct].key: unit_of[ct] for ct in state.members[name]}.values(),
                         key=lambda u: (u.memory_mb, u.key))
        for unit in on_node:
            if excess_mem <= EPS and excess_cpu <= EPS:
                break
            if unit.immovable:
                continue
            yield unit, f"{name} is over capacity ({what})"
            excess_mem -= unit.memory_mb
            excess_cpu -= unit.cpus


def capacity_tally(st: FleetState, ct: str, node: str, storage: str | None, copied: bool) -> Tally:
    c = st.containers[ct]
    return [(("capacity", "mem", node), c.memory_mb), (("capacity", "cpu", node), c.cpus)]


def capacity_limit(st: FleetState, key: Key) -> tuple[float, float]:
    _, what, node = key
    if what == "mem":
        return st.mem[node], st.mem_cap(node)  # type: ignore[index, arg-type]
    return st.cpu[node], st.cpu_cap(node)  # type: ignore[index, arg-type]


def capacity_short(st: FleetState, unit: Unit, node: str) -> tuple[float, float]:
    """Memory and CPUs ``node`` lacks for ``unit`` (<= 0: room, as far as arithmetic tells)."""
    return (unit.memory_mb - (st.mem_cap(node) - st.mem[node]),
            unit.cpus - (st.cpu_cap(node) - st.cpu[node]))


def capacity_frees(st: FleetState, unit: Unit) -> tuple[float, float]:
    return unit.memory_mb, unit.cpus


def capacity_exact(exact: ExactModel) -> None:
    """Memory and CPU within capacity per node (a node already over may keep what it has); sets
    ``exact.loads``, the memory loads the objective minimises."""
    st, model = exact.state, exact.model
    fixed_mem, fixed_cpu = exact.fixed()
    for n in st.nodes:
        on = [(u, exact.x[(u.key, n)]) for u in exact.units if (u.key, n) in exact.x]
        mem = grains(fixed_mem[n]) + sum(grains(u.memory_mb) * v for u, v in on)
        cpus = int(round(fixed_cpu[n] * 100)) + sum(int(round(u.cpus * 100)) * v for u, v in on)
        model.add(mem <= max(int(st.mem_cap(n) // GRAIN_MB), grains(st.mem[n])))
        model.add(cpus <= max(int(st.cpu_cap(n) * 100), int(round(st.cpu[n] * 100))))
        top = max(grains(fixed_mem[n]) + sum(grains(u.memory_mb) for u, _ in on), 0)
        load = model.new_int_var(0, top, f"load_{n}")
        model.add(load == mem)
        exact.loads[n] = (load, top)


# -- disk: every arriving disk fits a storage of the destination --------------------------------
def disk(ctx: Ctx, unit: Unit, node: str) -> str | None:
    result = assign_storage(ctx.state, unit, node)
    return result if isinstance(result, str) else None


def disk_on_target(state: FleetState, ct: str, dst: str, storage: str | None) -> str | None:
    """A plan names the storage (``target_storage``): it must exist on ``dst`` and have room."""
    here = state.where[ct]
    if here.storage is None:
        return None
    if storage not in state.nodes[dst].storage:
        return f"{dst} has no storage {storage}"
    c = state.containers[ct]
    if state.copies_disk(here, Placement(dst, storage)) and c.disk_gb > state.disk_free(dst, storage) + EPS:
        return f"needs {c.disk_gb:g} GB on {dst}:{storage}; {state.disk_free(dst, storage):.0f} GB free"
    return None


def disk_tally(st: FleetState, ct: str, node: str, storage: str | None, copied: bool) -> Tally:
    return [(("disk", node, storage), st.containers[ct].disk_gb)] if copied and storage else []


def disk_limit(st: FleetState, key: Key) -> tuple[float, float] | None:
    _, node, storage = key
    if (node, storage) not in st.disk:
        return None
    return st.disk[(node, storage)], st.disk_cap(node, storage)  # type: ignore[index, arg-type]


def disk_short(st: FleetState, unit: Unit, node: str) -> tuple[float]:
    """Disk (GB, the node's storages pooled) ``node`` lacks for ``unit``'s copied disks."""
    need = sum(st.containers[ct].disk_gb for ct in unit.members if expected_copy(st, ct, node))
    if need > 0:
        need -= sum(max(st.disk_free(node, s), 0.0) for s in st.nodes[node].storage)
    return (need,)


def disk_frees(st: FleetState, unit: Unit) -> tuple[float]:
    """Disk a unit's departure frees on its node (a disk on a shared storage frees nothing)."""
    return (sum(st.containers[ct].disk_gb for ct in unit.members
                if st.where[ct].storage is not None
                and not st.nodes[st.where[ct].node].storage[st.where[ct].storage].shared),)


def disk_exact(exact: ExactModel) -> None:
    """End-state disk per node, its storages pooled (exact for one storage per node; the filters
    still choose the storage): disks copied in must fit what is free once local disks copied out
    have left. A disk on a shared storage the destination mounts under the same id moves nothing
    (:func:`planners.objective.expected_copy`); one leaving a shared storage is not counted free."""
    st = exact.state
    for n in st.nodes:
        free = int(math.floor(sum(st.disk_free(n, s) for s in st.nodes[n].storage) + 1e-6))
        arrive, leave, most = [], [], 0
        for u in exact.units:
            var = exact.x.get((u.key, n))
            for ct in u.members:
                here, gb = st.where[ct], st.containers[ct].disk_gb
                if here.storage is None or gb <= 0:
                    continue
                if here.node != n and var is not None and expected_copy(st, ct, n):
                    arrive.append(math.ceil(gb) * var)
                    most += math.ceil(gb)
                elif here.node == n and not st.nodes[n].storage[here.storage].shared:
                    leave.append(int(gb) * (1 - var) if var is not None else int(gb))
        if most > free:
            exact.model.add(sum(arrive) - sum(leave) <= max(free, 0))


#: Every hard rule, in filter order. Violations are fixed lowest ``fix_order`` first; CP-SAT
#: constraints are stated lowest ``model_order`` first.
RULES = Registry((
    Rule("receives", (("receives", node_receives),), bound="arrive"),
    Rule("not_excluded", (("not_excluded", not_excluded),), bound="arrive"),
    Rule("not_emptying", (("not_emptying", not_emptying),), bound="always"),
    Rule("pin_to", (("pin_to", pin_to),), static=True, violations=outside_pins, fix_order=20, bound="always"),
    Rule("platform", (("platform", platform),), static=True, bound="always"),
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
