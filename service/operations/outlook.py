"""The fleet as it will be: what every planner plans against while other jobs are active.

    live (or given) Inventory
      + reservations: nodes an active evacuation / drain empties --> receive nothing (maintenance)
      + landings: queued and in-flight moves of active jobs --> containers on their destinations
        (minus the moves the new plan will take over: a lower job's queued moves off or onto the
        nodes a higher job empties, service.preemption)
      --> planning_fleet --> planners (evacuate, drain, rebalance, place, the nightly rebalance)

A job alone in the fleet sees the fleet unchanged. Without this, a rebalance planned while an
evacuation of n1 waits would happily fill n1 again, and two jobs would each count the same free
memory on a destination once. Reservations are also enforced where jobs are created
(service.jobs.create_job), so a saved plan or a racing instance cannot slip past them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.model import Container, Inventory, Node
from service.jobs import reservations
from service.lifecycle import JOB_ACTIVE, MoveState
from service.preemption import priority_of
from service.runtime import Runtime
from service.store import JobRow, MoveRow


@dataclass(frozen=True)
class Landing:
    """A move of an active job that will put ``ct`` on ``target`` (queued, or in flight)."""

    job_id: int
    kind: str
    ct: str
    source: str
    target: str
    target_storage: str | None
    started: bool


@dataclass(frozen=True)
class Outlook:
    """What active jobs will change: reserved nodes (node -> job id) and the moves still to land."""

    reserved: dict[str, int]
    landings: list[Landing]


def read_outlook(session: Session) -> Outlook:
    """Reservations and landings of every active job, read in one session."""
    rows = session.execute(
        select(MoveRow, JobRow.kind).join(JobRow, JobRow.id == MoveRow.job_id)
        .where(JobRow.state.in_(JOB_ACTIVE), MoveRow.state.in_((MoveState.PENDING, MoveState.RUNNING)))
        .order_by(MoveRow.job_id, MoveRow.seq))
    landings = [Landing(m.job_id, kind, m.ct, m.source, m.target, (m.options or {}).get("target_storage"),
                        m.state == MoveState.RUNNING) for m, kind in rows]
    return Outlook({node: job.id for node, job in reservations(session).items()}, landings)


def taken_over(landing: Landing, kind: str, nodes: Collection[str]) -> bool:
    """Whether a new plan of ``kind`` for ``nodes`` takes this move from its job: a move not yet
    started, of a lower job, off or onto one of the nodes the new plan empties."""
    return (not landing.started and priority_of(kind) > priority_of(landing.kind)
            and (landing.source in nodes or landing.target in nodes))


def as_it_will_be(inv: Inventory, outlook: Outlook, *, kind: str, nodes: Collection[str] = ()) -> Inventory:
    """``inv`` with every landing applied (except the ones a plan of ``kind`` for ``nodes`` takes
    over) and every reserved node receiving nothing. A container another job moves is pinned
    where it lands, so that no chain of the new plan picks it to make room (the store would
    refuse the job: a running move is never interrupted), unless it lands on a node the new plan
    empties."""
    cts = {c.id: c for c in inv.containers}
    by_name = {n.name: n for n in inv.nodes}
    moving: set[str] = set()  # another job moves them: the new plan leaves them where they land
    for landing in outlook.landings:
        ct = cts.get(landing.ct)
        if (ct is None or landing.target not in by_name or ct.node not in by_name
                or taken_over(landing, kind, nodes)):
            continue
        if landing.target not in nodes:  # landing on a node being emptied: it must leave again
            moving.add(ct.id)
        if ct.node != landing.target:  # not yet cut over: its load leaves the source now
            _shift(by_name, ct, landing.target, landing.target_storage)
        cts[ct.id] = ct.model_copy(update={"node": landing.target,
                                           "storage": landing.target_storage or ct.storage})
    for name in outlook.reserved:
        if name in by_name and name not in nodes:
            by_name[name] = by_name[name].model_copy(update={"maintenance": True})
    rules = inv.rules.model_copy(update={"pinned": sorted({*inv.rules.pinned, *moving})})
    return inv.model_copy(update={"nodes": [by_name[n.name] for n in inv.nodes],
                                  "containers": list(cts.values()), "rules": rules})


def _shift(nodes: dict[str, Node], ct: Container, target: str, target_storage: str | None) -> None:
    """Move ``ct``'s CPU use and disk from its node to ``target`` in the node records (memory and
    CPUs are summed from the containers by the planners)."""
    src, dst = nodes[ct.node], nodes[target]
    used = ct.cpu_usage * ct.cpus
    nodes[src.name] = _with_cpu(src, -used)
    nodes[target] = _with_cpu(dst, used)
    storage = target_storage or ct.storage
    if ct.storage is None or storage is None:
        return
    here, there = src.storage.get(ct.storage), dst.storage.get(storage)
    if here is not None and there is not None and here.shared and there.shared and storage == ct.storage:
        return  # a shared storage both mount: no bytes move
    if here is not None:
        nodes[src.name] = _with_disk(nodes[src.name], ct.storage, -ct.disk_gb)
    if there is not None:
        nodes[target] = _with_disk(nodes[target], storage, ct.disk_gb)


def _with_cpu(node: Node, delta_cores: float) -> Node:
    usage = min(1.0, max(0.0, node.cpu_usage + delta_cores / node.cpus))
    return node.model_copy(update={"cpu_usage": usage})


def _with_disk(node: Node, storage: str, delta_gb: float) -> Node:
    st = node.storage[storage]
    used = min(st.total_gb, max(0.0, st.used_gb + delta_gb))
    return node.model_copy(update={"storage": {**node.storage, storage: st.model_copy(update={"used_gb": used})}})


def planning_fleet(rt: Runtime, inv: Inventory, *, kind: str, nodes: Collection[str] = ()) -> Inventory:
    """The fleet a plan of ``kind`` (for ``nodes``, when it empties some) is made against: ``inv``
    as the active jobs in ``rt``'s store will leave it."""
    with rt.sessions() as session:
        outlook = read_outlook(session)
    if not outlook.landings and not outlook.reserved:
        return inv
    return as_it_will_be(inv, outlook, kind=kind, nodes=nodes)
