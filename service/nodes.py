"""The lifecycle of a node, in one place: its states, the transitions between them, and where they
are recorded. Planners never read the store: ``apply_node_states`` overlays the states on an
inventory, and ``fleet.model.Node.receives`` tells every planner which nodes take nothing.

    node (NODE_TRANSITIONS)
        active --cordon--> cordoned --drain--> draining --drained--> maintenance --restore-->
        restoring --restored--> active
        active --drain--> draining (a drain cordons first); draining --drain stopped--> cordoned
        cordoned | maintenance --uncordon--> active (nobody is brought back)
        cordon of a cordoned node, uncordon of an active one: nothing changes (no error)

    store: node_states (one row per node not active) and ct_origins (where each container that
        left a drained node lived, Incus' ``volatile.evacuate.origin``), both written in the same
        transaction as the decision, so a crash of ferry loses neither.
    settle (level-triggered, on every read): a draining node whose drain job ended moves on
        (drained -> maintenance, else back to cordoned); a restoring node whose restore job ended
        becomes active. Nothing has to be running when a job ends for the node to follow it.

Every state but active receives nothing; a restoring node receives only its own returning
containers, which its restore job moves without asking a planner.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import JSON, DateTime, Integer, Select, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from fleet.model import Container, Inventory
from fleet.plan import Plan
from service.jobs import JobConflict
from service.lifecycle import JOB_FINAL, JobState, MoveState
from service.store import Base, JobRow, MoveRow, utcnow


class NodeState(StrEnum):
    ACTIVE = "active"  # receives containers; no row in the store
    CORDONED = "cordoned"  # receives nothing; its containers stay
    DRAINING = "draining"  # receives nothing; a drain job moves its containers away
    MAINTENANCE = "maintenance"  # drained and empty: patch, reboot, then restore
    RESTORING = "restoring"  # a restore job brings its containers back


class NodeEvent(StrEnum):
    CORDON = "cordon"
    UNCORDON = "uncordon"
    DRAIN = "drain"
    DRAINED = "drained"  # the drain job succeeded
    DRAIN_STOPPED = "drain stopped"  # the drain job ended otherwise: the node stays cordoned
    RESTORE = "restore"
    RESTORED = "restored"  # the restore job ended


@dataclass(frozen=True)
class NodeTransition:
    sources: tuple[NodeState, ...]
    target: NodeState


_S = NodeState
NODE_TRANSITIONS: dict[NodeEvent, NodeTransition] = {
    NodeEvent.CORDON: NodeTransition((_S.ACTIVE,), _S.CORDONED),
    NodeEvent.UNCORDON: NodeTransition((_S.CORDONED, _S.MAINTENANCE), _S.ACTIVE),
    # A node in maintenance may be drained again: whatever arrived since (by hand) leaves too.
    NodeEvent.DRAIN: NodeTransition((_S.ACTIVE, _S.CORDONED, _S.MAINTENANCE), _S.DRAINING),
    NodeEvent.DRAINED: NodeTransition((_S.DRAINING,), _S.MAINTENANCE),
    NodeEvent.DRAIN_STOPPED: NodeTransition((_S.DRAINING,), _S.CORDONED),
    NodeEvent.RESTORE: NodeTransition((_S.MAINTENANCE, _S.CORDONED), _S.RESTORING),
    NodeEvent.RESTORED: NodeTransition((_S.RESTORING,), _S.ACTIVE),
}
#: States in which a node receives containers from planners.
NODE_RECEIVING: tuple[NodeState, ...] = (NodeState.ACTIVE,)
#: Operator verbs that name the state they ask for: asked of a node in that state already, they
#: change nothing and are no mistake (``kubectl cordon`` on a cordoned node). Drain and restore
#: start jobs: repeated while one runs, they are refused naming it (service.jobs).
IDEMPOTENT_EVENTS: frozenset[NodeEvent] = frozenset({NodeEvent.CORDON, NodeEvent.UNCORDON})


class NodeConflict(JobConflict):
    """The node's state refuses the verb (the API answers 409, the CLI exits 2)."""


def node_transition(event: NodeEvent, node: str, current: NodeState) -> NodeState:
    """The state ``event`` takes ``node`` to; a NodeConflict naming the node if it may not."""
    transition = NODE_TRANSITIONS[event]
    if current not in transition.sources:
        allowed = " or ".join(transition.sources)
        raise NodeConflict("node", node, f"is {current}; only a node that is {allowed} can {event}")
    return transition.target


# -- the store ---------------------------------------------------------------------------------
class NodeRow(Base):
    """A node whose state is not active (an active node has no row)."""

    __tablename__ = "node_states"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # NodeState
    #: The drain or restore job the node follows while draining / restoring.
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class OriginRow(Base):
    """A container that left ``origin`` in drain job ``job_id`` for ``moved_to``, and what it was
    then (``fingerprint``): restore brings it back only if it is still there and still that."""

    __tablename__ = "ct_origins"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ct: Mapped[str] = mapped_column(String(64), index=True)
    origin: Mapped[str] = mapped_column(String(64), index=True)
    moved_to: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The restore job bringing it back, once one does.
    restore_job: Mapped[int | None] = mapped_column(Integer, nullable=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def fingerprint(ct: Container) -> dict[str, Any]:
    """What restore compares: a container resized or moved to another storage since is skipped."""
    return {"cpus": ct.cpus, "memory_mb": ct.memory_mb, "disk_gb": ct.disk_gb, "storage": ct.storage}


def state_of(session: Session, node: str) -> NodeState:
    row = session.get(NodeRow, node)
    return NodeState(row.state) if row else NodeState.ACTIVE


def set_state(session: Session, node: str, state: NodeState, *, job_id: int | None = None,
              message: str = "") -> None:
    """Record ``state`` (an active node's row is removed: no row means active)."""
    row = session.get(NodeRow, node)
    if state is NodeState.ACTIVE:
        if row is not None:
            session.delete(row)
        return
    if row is None:
        row = NodeRow(name=node)
        session.add(row)
    row.state, row.job_id, row.message, row.since = state, job_id, message, utcnow()


def already_there(event: NodeEvent, current: NodeState) -> bool:
    """Whether ``event`` is an idempotent verb asking for the state the node is in already."""
    return event in IDEMPOTENT_EVENTS and NODE_TRANSITIONS[event].target is current


def operator_change(session: Session, node: str, event: NodeEvent) -> tuple[NodeState, NodeState]:
    """An operator's cordon or uncordon in the caller's transaction: (before, after). A node in
    the state asked for already keeps its row as it is (its ``since`` and message too)."""
    read_states(session)
    old = state_of(session, node)
    if already_there(event, old):
        return old, old
    return old, apply_event(session, node, event, message=f"{event} by an operator")


def apply_event(session: Session, node: str, event: NodeEvent, *, job_id: int | None = None,
                message: str = "") -> NodeState:
    """Check and record one transition in the caller's transaction."""
    new = node_transition(event, node, state_of(session, node))
    set_state(session, node, new, job_id=job_id, message=message)
    return new


def _settle_row(session: Session, row: NodeRow) -> None:
    job = session.get(JobRow, row.job_id) if row.job_id is not None else None
    if job is None or job.state not in JOB_FINAL:
        return
    if row.state == NodeState.DRAINING:
        left = bool((job.plan or {}).get("unplaced"))  # containers the drain found no place for
        if job.state == JobState.SUCCEEDED and not left:
            apply_event(session, row.name, NodeEvent.DRAINED, message=f"drained by job {job.id}")
        else:
            apply_event(session, row.name, NodeEvent.DRAIN_STOPPED,
                        message=f"drain job {job.id} ended {job.state}; containers may remain")
    elif row.state == NodeState.RESTORING:
        _forget_returned(session, job.id)
        apply_event(session, row.name, NodeEvent.RESTORED)


def _forget_returned(session: Session, restore_job: int) -> None:
    """Origins of containers the restore job brought home are done; the others may be retried."""
    home = {m.ct for m in session.scalars(select(MoveRow).where(
        MoveRow.job_id == restore_job, MoveRow.state == MoveState.SUCCEEDED))}
    for origin in session.scalars(select(OriginRow).where(OriginRow.restore_job == restore_job)):
        if origin.ct in home:
            session.delete(origin)
        else:
            origin.restore_job = None


def settle(session: Session) -> None:
    """Move every draining / restoring node on whose job has ended (level-triggered)."""
    for row in list(session.scalars(select(NodeRow).where(
            NodeRow.state.in_((NodeState.DRAINING, NodeState.RESTORING))))):
        _settle_row(session, row)


def read_states(session: Session) -> dict[str, NodeRow]:
    """Every node that is not active, after settling the ones whose job ended."""
    settle(session)
    session.flush()
    return {row.name: row for row in session.scalars(select(NodeRow).order_by(NodeRow.name))}


def stored_states(sessions: sessionmaker[Session]) -> dict[str, NodeRow]:
    """read_states in a transaction of its own (settling writes)."""
    with sessions.begin() as session:
        return read_states(session)


# -- drains ------------------------------------------------------------------------------------
def check_drain(sessions: sessionmaker[Session], nodes: Iterable[str]) -> None:
    """Refuse, before anything is planned, to drain a node whose state does not allow it."""
    with sessions() as session:
        read_states(session)
        for node in nodes:
            node_transition(NodeEvent.DRAIN, node, state_of(session, node))


def record_drain(sessions: sessionmaker[Session], plan: Plan, inv: Inventory, job_id: int | None) -> None:
    """The drained nodes follow job ``job_id`` (draining), and each container that leaves them
    has its origin recorded, in one transaction. With no job (nothing to move) a node is in
    maintenance at once, or cordoned when containers found no destination."""
    with sessions.begin() as session:
        for node in plan.goal.nodes:
            if job_id is None:
                _drained_at_once(session, node, bool(plan.unplaced))
                continue
            apply_event(session, node, NodeEvent.DRAIN, job_id=job_id,
                        message=f"{len(plan.unplaced)} containers have no destination" if plan.unplaced else "")
        for move in plan.moves if job_id is not None else ():
            session.add(OriginRow(ct=move.ct, origin=move.from_node, moved_to=move.to, job_id=job_id,
                                  fingerprint=fingerprint(inv.container(move.ct))))


def _drained_at_once(session: Session, node: str, unplaced: bool) -> None:
    """A drain with nothing to move leaves the node where its job's end would (maintenance, or
    cordoned when containers found no destination), checked step by step; a node there already
    (a drain repeated on a drained node) keeps its row as it is: nothing happened."""
    current = state_of(session, node)
    draining = node_transition(NodeEvent.DRAIN, node, current)
    final = node_transition(NodeEvent.DRAIN_STOPPED if unplaced else NodeEvent.DRAINED, node, draining)
    if final is not current:
        set_state(session, node, final, message="nothing to move")


# -- restores ----------------------------------------------------------------------------------
def origins_of(node: str) -> Select[tuple[OriginRow]]:
    """The containers that left ``node`` and that no restore is bringing back yet, oldest first."""
    return select(OriginRow).where(OriginRow.origin == node, OriginRow.restore_job.is_(None)).order_by(OriginRow.id)


def drained_moves(origins: Iterable[OriginRow]) -> Select[tuple[MoveRow]]:
    """The succeeded moves of the drain jobs that recorded ``origins``."""
    return select(MoveRow).where(MoveRow.job_id.in_({o.job_id for o in origins}),
                                 MoveRow.state == MoveState.SUCCEEDED)


def record_restore(sessions: sessionmaker[Session], node: str, plan: Plan, skipped: list[dict[str, str]],
                   job_id: int | None) -> None:
    """``node`` follows restore job ``job_id`` (active at once without one); the origins of the
    containers it brings back are marked, the skipped ones forgotten (they were listed)."""
    returning = {m.ct for m in plan.moves}
    gone = {s["ct"] for s in skipped}
    with sessions.begin() as session:
        apply_event(session, node, NodeEvent.RESTORE, job_id=job_id,
                    message=f"{len(skipped)} containers stay where they are" if skipped else "")
        if job_id is None:
            apply_event(session, node, NodeEvent.RESTORED)
        for origin in session.scalars(origins_of(node)):
            if origin.ct in returning and job_id is not None:
                origin.restore_job = job_id
            elif origin.ct in gone:
                session.delete(origin)


# -- metrics -----------------------------------------------------------------------------------
def node_state_metric(session: Session) -> GaugeMetricFamily:
    """``ferry_node_state{node, state} 1`` for every node that is not active (read at scrape time)."""
    family = GaugeMetricFamily("ferry_node_state", "Nodes that are not active, by lifecycle state (1 each).",
                               labels=["node", "state"])
    for row in read_states(session).values():
        family.add_metric([row.name, row.state], 1)
    return family


# -- what planners see -------------------------------------------------------------------------
def apply_node_states(inv: Inventory, states: dict[str, NodeState | str] | dict[str, NodeRow]) -> Inventory:
    """The inventory with each node's lifecycle state as the extension key ``state``, and every
    node that is not active marked ``cordoned`` (``Node.receives`` is then false). Pure: the same
    inventory and states give the same result; unknown nodes in ``states`` are ignored."""
    if not states:
        return inv
    words = {name: NodeState(s.state if isinstance(s, NodeRow) else s) for name, s in states.items()}
    nodes = []
    for node in inv.nodes:
        state = words.get(node.name, NodeState.ACTIVE)
        if state is NodeState.ACTIVE:
            nodes.append(node)
            continue
        nodes.append(node.model_validate({**node.model_dump(), "state": str(state),
                                          "cordoned": state not in NODE_RECEIVING}))
    return inv.model_copy(update={"nodes": nodes})


def receiving_again(inv: Inventory, node: str) -> Inventory:
    """``inv`` with ``node`` taking containers again (a restore checks its own moves this way)."""
    nodes = [n.model_validate({**n.model_dump(), "cordoned": None, "state": None}) if n.name == node else n
             for n in inv.nodes]
    return inv.model_copy(update={"nodes": nodes})


def states_view(rows: Iterable[NodeRow], inv: Inventory) -> list[dict[str, Any]]:
    """Every node of the fleet with its state (JSON of ``ferry node list``)."""
    by_name = {row.name: row for row in rows}
    out = []
    for node in inv.nodes:
        row = by_name.get(node.name)
        out.append({"node": node.name, "state": row.state if row else str(NodeState.ACTIVE),
                    "job": row.job_id if row else None, "message": row.message if row else "",
                    "containers": len(inv.on_node(node.name)), "ha_maintenance": node.maintenance})
    return out
