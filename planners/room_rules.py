"""The rules that decide whether an *allowed* node has room: capacity (configured memory and CPUs
within size x overcommit) and disk (every arriving disk fits a storage of the destination).

They run last among the filters (:data:`planners.rules.RULES`), so a unit they reject is "out of
room" rather than "not allowed"; each also has the arithmetic forms the room-making searches use
(``short``: what a node lacks for a unit, ``frees``: what a unit's departure frees) and a
counted form for waves (``tally`` / ``limit``). Registered in :mod:`planners.rules`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator

from planners.exact_model import GRAIN_MB, ExactModel, grains
from planners.objective import expected_copy
from planners.rulebook import Ctx, FilterFn
from planners.state import EPS, FleetState, Placement
from planners.storage import assign_storage
from planners.units import Unit, arriving

GIB = 1024.0
Key = tuple[Hashable, ...]
Tally = list[tuple[Key, float]]


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
