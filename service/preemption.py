"""Priorities and pre-emption: a higher job takes what a lower job has not started moving.

    evacuate (on-call) > drain (maintenance) > rebalance      (PRIORITY)

    new plan --find_yields--> the lower jobs' moves it takes, inside create_job's transaction:
        a pending move of a container the new plan moves            -> yielded, lock transferred
        a pending move onto a node the new plan reserves            -> yielded, lock released
        a pending move waiting (``after``) for a yielded move       -> yielded, lock released
        a running move of a container the new plan moves            -> JobConflict: never interrupted
    --transfer--> each lower job: its moves yielded, one journal line saying so; one left with
        nothing to do and run by nobody ends at once (its moves decided how)

Everything happens in the transaction that stores the new job, so the transfer is atomic: the new
job and its locks exist exactly when the lower moves are yielded. Marking a move yielded is a
conditional write (only while it is still pending); a saga starts a move the same way
(service.saga), so of the two, exactly one wins, and a move that started first is never taken.
What a lower job keeps is its plan minus the yielded moves and the moves that waited for them,
which stays feasible in the plan's own order; its engine then re-plans those against the fleet as
it will be (service.replanning), or yields when nothing useful is left.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from fleet.errors import InputError
from fleet.plan import Plan
from service.lifecycle import (
    JOB_ACTIVE,
    JOB_UNFINISHED,
    MOVE_FINAL,
    MOVE_UNFINISHED,
    JobEvent,
    JobState,
    MoveState,
    finished_job_state,
    job_transition,
)
from service.store import JobRow, JournalRow, LockRow, MoveRow, job_moves, utcnow

#: Who yields to whom: on-call's evacuation, then maintenance's drain, then the rebalance.
PRIORITY: dict[str, int] = {"evacuate": 3, "drain": 2, "rebalance": 1}
#: Jobs of these kinds reserve their nodes while active: no other plan may move anything onto them.
RESERVING: tuple[str, ...] = ("evacuate", "drain")


class MoveStarted(InputError):
    """The container's move in a lower job is already running: pre-emption never interrupts it
    (service.jobs refuses the new job with it as a JobConflict)."""


@dataclass
class Yield:
    """What one lower job gives up: its moves by id, and why each (the journal's words)."""

    job: JobRow
    taken: dict[int, str] = field(default_factory=dict)  # move id -> container, transferred to the new job
    dropped: dict[int, str] = field(default_factory=dict)  # move id -> why it no longer stands


def priority_of(kind: str) -> int:
    """A place plan, or any kind not listed, outranks nothing."""
    return PRIORITY.get(kind, 0)


def find_yields(session: Session, plan: Plan) -> list[Yield]:
    """The lower active jobs' moves ``plan`` takes (see module docstring); raises MoveStarted when
    one of its containers is being moved by a lower job right now. One query finds the moves
    concerned; only the jobs they belong to are read further (for moves waiting on them)."""
    mine = {m.ct for m in plan.moves}
    reserved = set(plan.goal.nodes) if plan.goal.kind in RESERVING else set()
    lower = [kind for kind, rank in PRIORITY.items() if rank < priority_of(plan.goal.kind)]
    if not lower or not (mine or reserved):
        return []
    concerned = session.execute(
        select(MoveRow, JobRow).join(JobRow, JobRow.id == MoveRow.job_id)
        .where(JobRow.state.in_(JOB_ACTIVE), JobRow.kind.in_(lower), MoveRow.state.in_(MOVE_UNFINISHED),
               or_(MoveRow.ct.in_(mine), MoveRow.target.in_(reserved)))
        .order_by(MoveRow.job_id, MoveRow.seq))
    found: dict[int, Yield] = {}
    for move, job in concerned:
        if move.ct in mine and move.state != MoveState.PENDING:
            raise MoveStarted("ct", move.ct, f"is being moved by job {job.id} right now (a running move is "
                              f"never interrupted); try again when it ends: 'ferry job show {job.id}'")
        entry = found.setdefault(job.id, Yield(job))
        if move.ct in mine:
            entry.taken[move.id] = move.ct
        elif move.state == MoveState.PENDING:
            entry.dropped[move.id] = f"{move.target} is reserved by the new {plan.goal.kind}"
    for entry in found.values():
        _drop_dependents(entry, job_moves(session, entry.job.id))
    return [entry for entry in found.values() if entry.taken or entry.dropped]


def _drop_dependents(found: Yield, moves: list[MoveRow]) -> None:
    """Pending moves that wait for a yielded one would only be skipped later: yield them too."""
    gone = {*found.taken.values(), *(m.ct for m in moves if m.id in found.dropped)}
    changed = True
    while changed:
        changed = False
        for move in moves:
            if move.id in found.taken or move.id in found.dropped or move.state != MoveState.PENDING:
                continue
            waits = sorted(set(move.after) & gone)
            if waits:
                found.dropped[move.id] = f"it waited for the move of {waits[0]}, which no longer stands"
                gone.add(move.ct)
                changed = True


def transfer(session: Session, yields: list[Yield], job_id: int, kind: str) -> None:
    """Yield the moves, hand the taken containers' locks to job ``job_id`` (of ``kind``), journal
    it on each lower job, and end a lower job left with nothing to do that nobody runs."""
    for found in yields:
        why = {mid: f"taken over by job {job_id} ({kind}) before it started" for mid in found.taken}
        why.update({mid: f"yielded to job {job_id} ({kind}): {text}" for mid, text in found.dropped.items()})
        for move_id, message in why.items():
            won = session.execute(update(MoveRow).where(MoveRow.id == move_id, MoveRow.state == MoveState.PENDING)
                                  .values(state=MoveState.YIELDED, message=message)).rowcount
            if won != 1:  # its saga started it a moment ago: it runs to its end
                raise MoveStarted("job", found.job.id, f"started a move job {job_id} wanted a moment ago; "
                                  "plan again")
        session.execute(update(LockRow).where(LockRow.job_id == found.job.id, LockRow.ct.in_(found.taken.values()))
                        .values(job_id=job_id))
        dropped_cts = [m.ct for m in job_moves(session, found.job.id) if m.id in found.dropped]
        session.execute(LockRow.__table__.delete().where(LockRow.job_id == found.job.id,
                                                         LockRow.ct.in_(dropped_cts)))
        _journal(session, found, job_id, kind)
        _end_if_idle(session, found.job, job_id)


def _names(cts: Collection[str]) -> str:
    return ", ".join(sorted(cts)) or "none"


def _journal(session: Session, found: Yield, job_id: int, kind: str) -> None:
    left = sum(1 for m in job_moves(session, found.job.id) if m.state in MOVE_UNFINISHED)
    text = (f"job {job_id} ({kind}) has priority: it took {_names(found.taken.values())} before they "
            f"started; {len(found.dropped)} more moves yielded; "
            + (f"{left} moves left, as planned until the job re-plans them against the fleet as it will be "
               "(at once if it runs, else when it starts)" if left else "nothing left to move: the job yields"))
    session.add(JournalRow(job_id=found.job.id, ct=None, step=None, kind="event", host="ferry", what=text,
                           status=None, duration_ms=0.0, detail={"taken_by": job_id,
                                                                 "taken": sorted(found.taken.values()),
                                                                 "moves_given_up": len(found.taken) + len(found.dropped)}))


def _end_if_idle(session: Session, job: JobRow, job_id: int) -> None:
    """A lower job with no move left to make, and no engine holding it, ends now (as its moves
    decide) instead of waiting for a window or a poll to notice."""
    moves = job_moves(session, job.id)
    if any(m.state not in MOVE_FINAL for m in moves) or job.state not in JOB_UNFINISHED:
        return
    if job.owner is not None and job.lease_until is not None and job.lease_until >= utcnow():
        return  # its engine is looking: it records the end itself
    final = finished_job_state((m.state for m in moves), cancelled=job.state == JobState.CANCELLING)
    job.state = job_transition(JobEvent.FINISH, job.state, final)
    job.message = f"{final}: yielded its moves to job {job_id}"
    job.finished_at = utcnow()
