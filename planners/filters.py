"""Feasibility filters: the hard rules, one small named function each.

A filter looks at one unit and one candidate node and returns ``None`` (feasible) or a one-line
reason naming the rule and the figures (``"pve3 has 2.0 GiB RAM free; needs 4.0 GiB"``). The
reasons reach plans (unplaced entries) and ``ferry place`` output, so they are written for people.
Rule filters come first (cheap, and they decide which nodes are *allowed*); capacity filters last
(they decide which allowed nodes have *room*), so "largest free on an allowed node" is meaningful.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from planners.state import EPS, FleetState, Placement
from planners.units import ANY, Unit

GIB = 1024.0


@dataclass(frozen=True)
class Ctx:
    """What a filter needs besides the unit and node: the state and the nodes being emptied."""

    state: FleetState
    emptying: frozenset[str] = field(default_factory=frozenset)


FilterFn = Callable[[Ctx, Unit, str], "str | None"]


def node_receives(ctx: Ctx, unit: Unit, node: str) -> str | None:
    n = ctx.state.nodes[node]
    if not n.online:
        return f"{node} is offline"
    if n.maintenance:
        return f"{node} is in maintenance"
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


def platform(ctx: Ctx, unit: Unit, node: str) -> str | None:
    have = ctx.state.nodes[node].platform
    if unit.platform not in (have, ANY):
        return f"needs a {unit.platform} node; {node} is {have}"
    return None


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


def _arriving(st: FleetState, unit: Unit, node: str) -> list[str]:
    return [ct for ct in unit.members if st.where[ct].node != node]


def memory(ctx: Ctx, unit: Unit, node: str) -> str | None:
    st = ctx.state
    need = sum(st.containers[ct].memory_mb for ct in _arriving(st, unit, node))
    free = st.mem_cap(node) - st.mem[node]
    if need > free + EPS:
        return f"needs {need / GIB:.1f} GiB RAM; {node} has {max(free, 0) / GIB:.1f} GiB free"
    return None


def cpu(ctx: Ctx, unit: Unit, node: str) -> str | None:
    st = ctx.state
    need = sum(st.containers[ct].cpus for ct in _arriving(st, unit, node))
    free = st.cpu_cap(node) - st.cpu[node]
    if need > free + EPS:
        return (f"needs {need:g} CPUs; {node} has {max(free, 0):g} free "
                f"(overcommit {st.policy.cpu_overcommit:g})")
    return None


def _storage_for(st: FleetState, ct: str, node: str, taken: dict[str, float]) -> tuple[str | None, float]:
    """(storage, GB it consumes) for one arriving container, or (None, 0) when nothing fits."""
    c = st.containers[ct]
    here = st.where[ct]
    storages = st.nodes[node].storage
    ranked = ([here.storage] if here.storage in storages else []) + sorted(
        (s for s in storages if s != here.storage),
        key=lambda s: (-(st.disk_free(node, s) - taken.get(s, 0.0)), s))
    for sid in ranked:
        if not st.copies_disk(here, Placement(node, sid)):
            return sid, 0.0  # the same shared storage: nothing is written, whatever its fill
        if c.disk_gb <= st.disk_free(node, sid) - taken.get(sid, 0.0) + EPS:
            return sid, c.disk_gb
    return None, 0.0


def assign_storage(st: FleetState, unit: Unit, node: str) -> dict[str, str | None] | str:
    """Choose a target storage on ``node`` for each arriving member, or say why none fits.

    A container keeps its storage id when the destination has it with room; otherwise it goes to
    the destination storage with the most free space that fits it (ties: storage id order).
    """
    taken: dict[str, float] = {}
    out: dict[str, str | None] = {}
    for ct in _arriving(st, unit, node):
        if st.where[ct].storage is None:
            out[ct] = None
            continue
        sid, need = _storage_for(st, ct, node, taken)
        if sid is None:
            storages = st.nodes[node].storage
            best = max(sorted(storages), key=lambda s: st.disk_free(node, s) - taken.get(s, 0.0), default=None)
            if best is None:
                return f"needs {st.containers[ct].disk_gb:g} GB disk for {ct}; {node} has no storage"
            free = max(st.disk_free(node, best) - taken.get(best, 0.0), 0.0)
            return f"needs {st.containers[ct].disk_gb:g} GB disk for {ct}; {node}:{best} has {free:.0f} GB free"
        taken[sid] = taken.get(sid, 0.0) + need
        out[ct] = sid
    return out


def disk(ctx: Ctx, unit: Unit, node: str) -> str | None:
    result = assign_storage(ctx.state, unit, node)
    return result if isinstance(result, str) else None


#: Rule filters decide whether a node is allowed at all; capacity filters whether it has room.
RULE_FILTERS: tuple[tuple[str, FilterFn], ...] = (
    ("receives", node_receives),
    ("not_excluded", not_excluded),
    ("not_emptying", not_emptying),
    ("pin_to", pin_to),
    ("platform", platform),
    ("anti_affinity", anti_affinity),
)
CAPACITY_FILTERS: tuple[tuple[str, FilterFn], ...] = (
    ("memory", memory),
    ("cpu", cpu),
    ("disk", disk),
)
FILTERS = RULE_FILTERS + CAPACITY_FILTERS


def first_failure(ctx: Ctx, unit: Unit, node: str,
                  filters: tuple[tuple[str, FilterFn], ...] = FILTERS) -> tuple[str, str] | None:
    """The first filter that rejects ``node`` for ``unit``, as (filter name, reason), or None."""
    for name, check in filters:
        why = check(ctx, unit, node)
        if why is not None:
            return name, why
    return None
