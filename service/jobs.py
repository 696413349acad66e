"""Job records: create a job from a plan (locking its containers), change states, read them back.

Thin functions over the store, shared by the engine, the CLI and the REST API, so that every way
into ferry enforces the same rules: a container is moved by one job at a time, and a node is
evacuated by one job at a time.

Both rules and the job lease hold between instances sharing one store: job creation is serialised
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory transaction lock), and a claim is a
compare-and-set on the job's fencing token. Whoever holds a claim checks it, in the same transaction,
with every write it makes (:func:`renew_claim`), so an instance that lost its lease (stalled past it,
cut off from the database) learns so before its next step and stops instead of acting.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from adapters.base import JournalEntry, Step
from fleet.errors import InputError
from fleet.plan import Plan
from service.lifecycle import (
    CONTROLS,
    JOB_ACTIVE,
    JOB_FINAL,
    IllegalTransition,
    JobEvent,
    JobState,
    MoveState,
    Phase,
    job_event_for,
    job_transition,
)
from service.logs import log_transition
from service.movespec import move_options
from service.preemption import RESERVING, MoveStarted, Yield, find_yields, priority_of, transfer
from service.store import (
    JobRow,
    JournalRow,
    LinkRow,
    LockRow,
    MoveRow,
    job_journal,
    job_moves,
    lone_statement,
    utcnow,
)
from service.store_basics import lease_holder

log = logging.getLogger("ferry.jobs")


class JobConflict(InputError):
    """The plan touches something another active job holds."""


def reservations(session: Session) -> dict[str, JobRow]:
    """Node -> the active evacuation or drain that reserves it (the oldest, if several)."""
    out: dict[str, JobRow] = {}
    query = select(JobRow).where(JobRow.state.in_(JOB_ACTIVE), JobRow.kind.in_(RESERVING)).order_by(JobRow.id)
    for job in session.scalars(query):
        for node in job.nodes:
            out.setdefault(node, job)
    return out


#: Key of the PostgreSQL advisory lock that serialises job creation ("ferryjob", signed 64-bit).
_CREATE_KEY = int.from_bytes(b"ferryjob", "big", signed=True)


def create_job(sessions: sessionmaker[Session], plan: Plan, *, approved: bool) -> int:
    """Store ``plan`` as a new job and lock its containers; refuse if another job holds one, unless
    it is a lower-priority job that has not started moving it: then the container is taken over
    (service.preemption), in the same transaction.

    The check and the insert are one serialised transaction, so of two instances creating jobs for
    one node or one container at once exactly one wins and the other gets a JobConflict."""
    try:
        with sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_KEY})
            yields = _refuse_conflicts(session, plan)
            job_id = _insert_job(session, plan, approved)
            transfer(session, yields, job_id, plan.goal.kind)
            taken = {ct for found in yields for ct in found.taken.values()}
            session.add_all(LockRow(ct=m.ct, job_id=job_id) for m in plan.moves if m.ct not in taken)
            return job_id
    except MoveStarted as exc:
        raise JobConflict(exc.key, exc.value, exc.why) from None
    except IntegrityError:  # a container lock taken by a writer that bypassed the serialisation
        check_conflicts(sessions, plan)
        raise


def check_conflicts(sessions: sessionmaker[Session], plan: Plan) -> None:
    """JobConflict now if ``plan`` could not be stored (create_job checks again, atomically): the
    precise refusal comes before a drift check against the fleet as the other jobs will leave it."""
    with sessions() as session:
        try:
            _refuse_conflicts(session, plan)
        except MoveStarted as exc:
            raise JobConflict(exc.key, exc.value, exc.why) from None


def check_nodes_free(sessions: sessionmaker[Session], kind: str, nodes: Collection[str]) -> None:
    """JobConflict if an active job of the same or a higher priority than a ``kind`` job empties
    one of ``nodes`` (asked before planning: against the fleet as that job will leave it, the
    plan would look like there is nothing to move)."""
    with sessions() as session:
        _refuse_busy_nodes(reservations(session), kind, nodes)


def _refuse_busy_nodes(reserved: dict[str, JobRow], kind: str, nodes: Collection[str]) -> None:
    if kind not in RESERVING:
        return
    busy = sorted(n for n in set(reserved) & set(nodes) if priority_of(reserved[n].kind) >= priority_of(kind))
    if busy:
        job = reserved[busy[0]]
        verb = {"evacuate": "evacuated", "drain": "drained"}[job.kind]
        raise JobConflict("node", busy[0], f"is already being {verb} by job {job.id} "
                          f"({job.state}); see 'ferry job show {job.id}'")


def _refuse_conflicts(session: Session, plan: Plan) -> list[Yield]:
    """JobConflict if an active job of the same or a higher priority evacuates / drains one of the
    plan's nodes, if an active job reserves a node the plan moves a container onto, or if another
    job holds one of its containers and does not yield it; else what lower jobs yield."""
    yields = find_yields(session, plan)
    reserved = reservations(session)
    _refuse_busy_nodes(reserved, plan.goal.kind, plan.goal.nodes)
    for move in plan.moves:
        if (job := reserved.get(move.to)) is not None:
            raise JobConflict("node", move.to, f"is reserved by job {job.id} ({job.kind}, {job.state}): "
                              f"nothing may move onto it until that job ends; see 'ferry job show {job.id}'")
    taken = {(found.job.id, ct) for found in yields for ct in found.taken.values()}
    cts = [m.ct for m in plan.moves]
    for lock in session.scalars(select(LockRow).where(LockRow.ct.in_(cts))):
        if (lock.job_id, lock.ct) not in taken:
            raise JobConflict("ct", lock.ct, f"is being moved by job {lock.job_id}; "
                              f"see 'ferry job show {lock.job_id}'")
    return yields


def _insert_job(session: Session, plan: Plan, approved: bool) -> int:
    """The job and its moves (create_job adds the locks once lower jobs have handed theirs over)."""
    from service.addressing import record_allocations  # brings the planners: paid when storing only

    job = JobRow(kind=plan.goal.kind, nodes=list(plan.goal.nodes),
                 state=JobState.APPROVED if approved else JobState.PENDING, plan=plan.to_dict())
    session.add(job)
    session.flush()
    for seq, move in enumerate(plan.moves):
        session.add(MoveRow(job_id=job.id, seq=seq, ct=move.ct, source=move.from_node,
                            target=move.to, method=move.method, wave=move.wave,
                            after=list(move.after), options=move_options(move),
                            predicted=move.predicted.model_dump(mode="json")))
    record_allocations(session, job.id, plan)
    return job.id


@dataclass(frozen=True)
class Claim:
    """An instance's claim on a job: who, under which fencing token, renewed for how long."""

    job_id: int
    owner: str
    token: int
    lease_s: float


class LeaseLost(JobConflict):
    """The claim is no longer ours: another instance took the job over, or our lease ran out."""


def claim_job(sessions: sessionmaker[Session], job_id: int, owner: str, lease_s: float) -> JobRow:
    """Take the job's lease for ``owner``, unless another live instance holds it; the row comes
    back with its new ``claim_token``. The take is a compare-and-set on the token, so of two
    instances claiming at once exactly one wins and the other gets a JobConflict."""
    with sessions.begin() as session:
        job = session.get(JobRow, job_id)
        if job is None:
            raise InputError("job", job_id, "no such job (see 'ferry jobs')")
        holder, seen = lease_holder(job), job.claim_token
        if holder in (None, owner):
            won = session.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.claim_token == seen)
                .values(owner=owner, claim_token=seen + 1,
                        lease_until=utcnow() + dt.timedelta(seconds=lease_s))).rowcount
            session.refresh(job)
            if won == 1:
                return job
            holder = lease_holder(job) or job.owner
        until = f"{job.lease_until:%H:%M:%S} UTC" if job.lease_until else "when it lets go"
        raise JobConflict("job", job_id, f"is being run by {holder}; its lease ends {until} "
                          "unless it renews it")


_JOBS = JobRow.__table__.c
#: The job claim's fenced renewal, built once (a saga step runs it on every write): a Core
#: statement, so objects the session holds are not updated: callers read the job after it.
_RENEW_JOB = update(JobRow.__table__).where(
    _JOBS.id == bindparam("fence_id"), _JOBS.owner == bindparam("fence_owner"),
    _JOBS.claim_token == bindparam("fence_token"), _JOBS.lease_until >= bindparam("fence_now"))


def renew_claim(session: Session, claim: Claim) -> None:
    """In the caller's transaction: renew ``claim``'s lease if it is still ours (same owner, same
    token, lease not run out), else raise LeaseLost, so the caller's writes are never committed."""
    now = utcnow()
    held = session.execute(_RENEW_JOB, {
        "fence_id": claim.job_id, "fence_owner": claim.owner, "fence_token": claim.token, "fence_now": now,
        "lease_until": now + dt.timedelta(seconds=claim.lease_s)}).rowcount
    if held != 1:
        raise LeaseLost("job", claim.job_id, f"{claim.owner} no longer holds it (claim {claim.token}): "
                        "its lease ran out or another instance took it over; stopping without acting")


def release_locks(session: Session, job_id: int, ct: str | None = None) -> None:
    query = delete(LockRow).where(LockRow.job_id == job_id)
    if ct is not None:
        query = query.where(LockRow.ct == ct)
    session.execute(query)


class NoSuchJob(InputError):
    """The job id names no job."""


def get_job(session: Session, job_id: int) -> JobRow:
    job = session.get(JobRow, job_id)
    if job is None:
        raise NoSuchJob("job", job_id, "no such job (see 'ferry jobs')")
    return job


def control_job(sessions: sessionmaker[Session], job_id: int, action: str) -> tuple[str, str]:
    """Apply an operator's control (lifecycle.CONTROLS) in one transaction; (old state, new state).
    The CLI and the REST API share it, so both enforce the same rules with the same words."""
    if JobEvent(action) not in CONTROLS:
        raise ValueError(f"{action!r} is the engine's, not an operator's control")
    with sessions.begin() as session:
        job = get_job(session, job_id)
        old = job.state
        try:
            job.state = job_transition(JobEvent(action), old)
        except IllegalTransition as exc:
            raise JobConflict("job", job_id, str(exc)) from None
    return old, job.state


def set_job_state(sessions: sessionmaker[Session], job_id: int, state: JobState,
                  message: str | None = None, *, claim: Claim | None = None) -> None:
    """Move the job to ``state``, if the lifecycle's transition table allows it from where it is
    (IllegalTransition if not: a job never leaves a final state, for one), and, given a ``claim``,
    only while it holds (LeaseLost if not)."""
    with sessions.begin() as session:
        if claim is not None:
            renew_claim(session, claim)
        job = get_job(session, job_id)
        job_event_for(job.state, state)
        old = job.state
        job.state = state
        if message is not None:
            job.message = message
        if state == JobState.RUNNING and job.started_at is None:
            job.started_at = utcnow()
        if state in JOB_FINAL:
            job.finished_at = utcnow()
            release_locks(session, job_id)
    log_transition(log, f"job {job_id}", old, state, message, job=job_id)


def list_jobs(sessions: sessionmaker[Session], limit: int = 50) -> list[dict[str, Any]]:
    with sessions() as session:
        jobs = session.scalars(select(JobRow).order_by(JobRow.id.desc()).limit(limit))
        out = []
        for job in jobs:
            moves = job_moves(session, job.id)
            done = sum(1 for m in moves if m.state == MoveState.SUCCEEDED)
            out.append({"id": job.id, "kind": job.kind, "nodes": job.nodes, "state": job.state,
                        "run_by": lease_holder(job),
                        "moves": len(moves), "done": done, "created_at": job.created_at.isoformat() + "Z",
                        "message": job.message})
        return out


def job_detail(sessions: sessionmaker[Session], job_id: int) -> dict[str, Any]:
    """Everything known about a job, for ``ferry job show`` and the API."""
    with sessions() as session:
        job = get_job(session, job_id)
        moves = [{"ct": m.ct, "from": m.source, "to": m.target, "method": m.method, "wave": m.wave,
                  "after": m.after, "state": m.state, "step": m.step, "phase": m.phase,
                  "attempts": m.attempts, "message": m.message, "predicted": m.predicted,
                  "figures": m.figures} for m in job_moves(session, job_id)]
        journal = [{"at": j.at.isoformat() + "Z", "ct": j.ct, "step": j.step, "kind": j.kind,
                    "host": j.host, "what": j.what, "status": j.status,
                    "duration_ms": round(j.duration_ms, 3), "detail": j.detail}
                   for j in job_journal(session, job_id)]
        return {"id": job.id, "kind": job.kind, "nodes": job.nodes, "state": job.state,
                "message": job.message, "created_at": job.created_at.isoformat() + "Z",
                "started_at": job.started_at.isoformat() + "Z" if job.started_at else None,
                "finished_at": job.finished_at.isoformat() + "Z" if job.finished_at else None,
                "moves": moves, "journal": journal}


#: Appends journal rows (Core: no ORM object is needed), built once.
JOURNAL_INSERT = insert(JournalRow.__table__)


def journal_values(job_id: int, ct: str | None, step: str | None, entry: JournalEntry) -> dict[str, Any]:
    """One journal row's columns, for a Core insert (``JournalRow.__table__``)."""
    return {"job_id": job_id, "ct": ct, "step": step, "kind": entry.kind, "host": entry.host, "what": entry.what,
            "status": entry.status, "duration_ms": entry.duration_ms, "detail": dict(entry.detail)}


def add_journal(sessions: sessionmaker[Session], job_id: int, ct: str | None, step: str | None,
                entry: JournalEntry) -> None:
    """Append one entry in its own transaction: a Core insert, as no ORM object is needed (the
    unit of work would cost a saga step more than the write itself)."""
    with lone_statement(sessions) as connection:
        connection.execute(JOURNAL_INSERT, journal_values(job_id, ct, step, entry))


_LINKS = LinkRow.__table__.c
#: Folds one observation into a link's figure: mb_s * keep + add (keep = 1 - weight, add =
#: weight * observed), so the figure is computed where it is stored, under the row's lock.
_FOLD_LINK = update(LinkRow.__table__).where(_LINKS.source == bindparam("link_source"),
                                             _LINKS.target == bindparam("link_target")).values(
    mb_s=_LINKS.mb_s * bindparam("keep") + bindparam("add"), samples=_LINKS.samples + 1)


def learn_link(session: Session, source: str, target: str, mb_s: float, weight: float) -> None:
    """In the caller's transaction (a move's end): fold one observed throughput into the
    exponentially weighted figure for the link. Two moves on one link may insert its first figure
    at once: the insert runs under a savepoint, and the one that loses updates instead."""
    fold = {"link_source": source, "link_target": target, "keep": 1 - weight, "add": weight * mb_s}
    for _ in range(3):
        if session.execute(_FOLD_LINK, fold).rowcount == 1:
            return
        try:
            with session.begin_nested():
                session.execute(insert(LinkRow.__table__), {"source": source, "target": target, "mb_s": mb_s,
                                                           "samples": 1})
            return
        except IntegrityError:
            continue


def learned_links(sessions: sessionmaker[Session]) -> dict[str, float]:
    with sessions() as session:
        return {f"{r.source}->{r.target}": round(r.mb_s, 1) for r in session.scalars(select(LinkRow))}


def last_moved(sessions: sessionmaker[Session]) -> dict[str, float]:
    """World-clock time each container last finished a move, for the rebalancer's cooldown."""
    with sessions() as session:
        rows = session.execute(select(MoveRow.ct, MoveRow.finished_at).where(MoveRow.state == MoveState.SUCCEEDED))
        out: dict[str, float] = {}
        for ct, finished in rows:
            if finished is not None:
                out[ct] = max(out.get(ct, 0.0), finished)
        return out


def pending_cleanups(sessions: sessionmaker[Session]) -> list[tuple[int, int]]:
    """(job id, move id) of moves that succeeded with their cleanup left for later."""
    with sessions() as session:
        rows = session.execute(select(MoveRow.job_id, MoveRow.id).where(
            MoveRow.state == MoveState.SUCCEEDED, MoveRow.step == Step.CLEANUP, MoveRow.phase == Phase.PENDING))
        return [(job_id, move_id) for job_id, move_id in rows]
