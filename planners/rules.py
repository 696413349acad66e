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
from collections.abc import Callable, Iterator

from planners.exact_model import GRAIN_MB, ExactModel, grains
from planners.objective import expected_copy
from planners.rulebook import Ctx, FilterFn, Registry, Rule
from planners.state import EPS, FleetState, Placement
from planners.storage import assign_storage
from planners.units import ANY, Unit, arriving

GIB = 1024.0


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
    have = ctx.state.nodes[node].platform
    if unit.platform not in (have, ANY):
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
    Rule("receives", (("receives", node_receives),)),
    Rule("not_excluded", (("not_excluded", not_excluded),)),
    Rule("not_emptying", (("not_emptying", not_emptying),)),
    Rule("pin_to", (("pin_to", pin_to),), static=True, violations=outside_pins, fix_order=20),
    Rule("platform", (("platform", platform),), static=True),
    Rule("anti_affinity", (("anti_affinity", anti_affinity),), violations=anti_affinity_breaches,
         fix_order=10, constrain=anti_affinity_exact, model_order=20),
    Rule("affinity", violations=split_groups, fix_order=30, check_end=groups_end_split),
    Rule("capacity", (("memory", memory), ("cpu", cpu)), decides="room", violations=overloads,
         fix_order=40, constrain=capacity_exact, model_order=10),
    Rule("disk", (("disk", disk),), decides="room", constrain=disk_exact, model_order=30,
         check_move=disk_on_target),
))
