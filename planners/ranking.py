"""Filter, then score: the candidate nodes for one unit, best first, and why the others are out.

This is the feasibility/rank step of the pipeline (Nomad's FeasibilityChecker + RankIterator,
the Kubernetes scheduler's Filter + Score): every node goes through the filters of the registered
rules (:data:`planners.rules.RULES`); the survivors are scored by :data:`scorers.SCORERS`; rejects
keep the first filter's reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from planners.room_rules import GIB
from planners.rulebook import Ctx
from planners.rules import RULES
from planners.score_many import order
from planners.scorers import score
from planners.state import FleetState
from planners.storage import assign_storage
from planners.units import Unit, unit_memory_on


@dataclass(frozen=True)
class Candidate:
    node: str
    score: float
    storages: dict[str, str | None]
    memory_after: float  # fraction of the node's RAM configured after the unit lands


@dataclass(frozen=True)
class Rejection:
    node: str
    filter: str
    reason: str


def evaluate(ctx: Ctx, unit: Unit, node: str) -> Candidate | Rejection:
    """Run every filter on one node; score it when it passes."""
    failed = RULES.first_failure(ctx, unit, node)
    if failed is not None:
        return Rejection(node, failed[0], failed[1])
    storages = assign_storage(ctx.state, unit, node)
    assert isinstance(storages, dict)  # the disk filter passed
    st = ctx.state
    after = (st.mem[node] + unit_memory_on(st, unit, node)) / st.nodes[node].memory_mb
    return Candidate(node, score(ctx, unit, node, storages), storages, after)


def rank(ctx: Ctx, unit: Unit, nodes: Iterable[str]) -> tuple[list[Candidate], list[Rejection]]:
    """Feasible nodes best first (ties by name), and rejected nodes with their reasons."""
    good: list[Candidate] = []
    bad: list[Rejection] = []
    for node in nodes:
        result = evaluate(ctx, unit, node)
        (good if isinstance(result, Candidate) else bad).append(result)
    good.sort(key=lambda c: (c.score, c.node))
    return good, bad


def best(ctx: Ctx, unit: Unit, nodes: list[str], *,
         explain: bool = True) -> tuple[Candidate | None, list[Rejection]]:
    """The same winner as ``rank(...)[0]``, found without filtering every node.

    Every score term is known before the filters run: balance terms are arithmetic on loads, and
    the move cost depends only on whether the disk is copied, which
    :func:`planners.objective.expected_copy` tells before a storage is chosen; so nodes are scored
    by the same scorers as :func:`rank` (``storages=None``; over many nodes at once,
    :mod:`planners.score_many`) and visited best score first; the
    first one the filters accept wins. Rejections are collected (a full pass) only when no node
    fits and ``explain`` is set, to say why; callers that drop the reasons skip that pass (an
    overloaded fleet can have thousands).
    """
    for node in order(ctx, unit, nodes):
        result = evaluate(ctx, unit, node)
        if isinstance(result, Candidate):
            return result, []
    return None, rank(ctx, unit, nodes)[1] if explain else []


def explain_unplaced(ctx: Ctx, unit: Unit, rejections: list[Rejection]) -> str:
    """Name the binding constraint and the best candidate for a unit no node accepts.

    Among *allowed* nodes (those passing every rule filter) the capacity dimension that rejects
    the most of them binds; the best candidate is the allowed node with the most of it free.
    With no allowed node at all, the rule that rejected the most nodes binds.
    """
    st = ctx.state
    capacity_names = {name for name, _ in RULES.capacity_filters}
    allowed = [r for r in rejections if r.filter in capacity_names]
    if not allowed:
        counts: dict[str, list[Rejection]] = {}
        for r in rejections:
            counts.setdefault(r.filter, []).append(r)
        if not counts:
            return "no node to move to"
        name = max(sorted(counts), key=lambda k: len(counts[k]))
        example = counts[name][0]
        return f"no allowed node: {name} rules out {len(counts[name])} node(s), e.g. {example.reason}"
    by_dim: dict[str, list[Rejection]] = {}
    for r in allowed:
        by_dim.setdefault(r.filter, []).append(r)
    order = [name for name, _ in RULES.capacity_filters]
    dim = max(order, key=lambda k: (len(by_dim.get(k, [])), -order.index(k)))
    nodes = sorted(r.node for r in allowed)
    if dim == "memory":
        top = min(nodes, key=lambda n: (-(st.mem_cap(n) - st.mem[n]), n))
        free = max(st.mem_cap(top) - st.mem[top], 0.0)
        return (f"needs {unit.memory_mb / GIB:.1f} GiB RAM; largest free on an allowed node is "
                f"{free / GIB:.1f} GiB ({top})")
    if dim == "cpu":
        top = min(nodes, key=lambda n: (-(st.cpu_cap(n) - st.cpu[n]), n))
        free = max(st.cpu_cap(top) - st.cpu[top], 0.0)
        return f"needs {unit.cpus:g} CPUs; most free on an allowed node is {free:g} ({top})"
    return _explain_disk(st, unit, nodes)


def _explain_disk(st: FleetState, unit: Unit, nodes: list[str]) -> str:
    need = max((st.containers[ct].disk_gb for ct in unit.members), default=0.0)
    spots = [(-st.disk_free(n, sid), n, sid) for n in nodes for sid in st.nodes[n].storage]
    if not spots:
        return f"needs {need:g} GB disk; no allowed node has a storage"
    free, node, sid = min(spots)
    return f"needs {need:g} GB disk; largest free storage on an allowed node is {max(-free, 0):.0f} GB ({node}:{sid})"
