"""Move claims: several instances run the moves of one job, each move by exactly one of them.

    engine --claim_ready_moves--> [MoveClaim]  (one transaction: lock the job's free moves,
        |                                       mark the skipped / cancelled ones, claim the ready ones)
        |-- saga writes: renew_move in the same transaction (fenced: LeaseLost if it is no longer ours)
        |-- heartbeat every ~0.5 s: renew_moves (a claim that fails is flagged lost; its saga stops)
        `-- after each move: decide_job (whoever ends the last move ends the job, once)

A move is free when nobody holds a live lease on it: never claimed, ended, or its holder's lease
ran out (it died or froze) or its holder was a process on this host that is gone. A claim is a
conditional write on the move's fencing token (``claim_token``, incremented by every claim) whose
row count is checked; on PostgreSQL the free moves are first locked with ``SELECT … FOR UPDATE
SKIP LOCKED``, so instances claiming at once take different moves instead of queueing on one; on
SQLite every transaction is ``BEGIN IMMEDIATE`` (service.store), so claims are serialised. A move
whose holder is gone is resumed by the next claimant through the saga's observe-then-act path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.jobs import Claim, JobConflict, LeaseLost, get_job, lease_holder, release_locks, renew_claim
from service.lifecycle import (
    MOVE_FINAL,
    MOVE_IN_FLIGHT,
    MOVE_PROBLEM,
    MOVE_UNFINISHED,
    JobState,
    MoveState,
    finished_job_state,
)
from service.logs import log_transition
from service.participants import live_participants
from service.replacement import awaits_replacement
from service.store import JobRow, MoveRow, job_moves, utcnow

log = logging.getLogger("ferry.jobs")

#: Job states in which the moves decide the end (a paused job ends once it is resumed).
_DECIDABLE = (JobState.APPROVED, JobState.RUNNING, JobState.CANCELLING)


@dataclass
class MoveClaim:
    """This instance's claim on one move: the fencing token it won, and when it last renewed it."""

    move_id: int
    ct: str
    owner: str
    token: int
    lease_s: float
    renewed_at: float = field(default_factory=time.monotonic)
    lost: bool = False

    def expired(self) -> bool:
        """True once the claim is known lost, or may be (not renewed for a whole lease): the saga
        then stops before it acts again."""
        return self.lost or time.monotonic() - self.renewed_at > self.lease_s


class MoveLost(LeaseLost):
    """The move's claim is no longer ours: its lease ran out and another instance may hold it."""


def move_holder(move: Any) -> str | None:
    """The instance driving ``move`` now, or None (the rule of service.jobs.lease_holder)."""
    return lease_holder(SimpleNamespace(owner=move.claimed_by, lease_until=move.lease_until))  # type: ignore[arg-type]


@dataclass
class Offer:
    """What one claim round found: the moves claimed, and whether unfinished moves are held by
    other live instances (then the job is not over, and their leases bound the wait)."""

    claims: list[tuple[MoveRow, MoveClaim]] = field(default_factory=list)
    held_elsewhere: bool = False
    #: Moves that could start now but are beyond this instance's share: left to the other live
    #: instances (the engine takes them itself if nobody does within a grace period).
    left_to_others: int = 0
    #: How many of the job's moves were yielded to higher jobs (more than last time: re-plan).
    yielded: int = 0


#: ``admit(move, flying)``: may ``move`` start, given the moves of every job that live instances
#: (this one included) hold now, with the ones this round claimed?
Admit = Callable[[Any, list[Any]], bool]


def claim_ready_moves(sessions: sessionmaker[Session], job_id: int, owner: str, lease_s: float, *,
                      busy: set[int], admit: Admit, room: int = 1 << 30, job_claim: Claim | None = None,
                      fair: bool = False) -> Offer:
    """Claim up to ``room`` of the job's free moves that may start now, dead instances' moves in
    flight first.

    ``busy``: moves this instance runs already; ``admit``: the caller's limits (and windows) for a
    move not yet started, over the moves in flight fleet-wide; ``fair``: when other live instances
    take part in the job (service.participants), take only this instance's share (fair_room) and
    leave the rest to them (``Offer.left_to_others``).
    Moves whose ``after`` failed are skipped, and pending moves of a cancelling job are cancelled,
    in the same transaction. The job's moves are looked at through a few columns; only the ones
    that look claimable are then locked and read whole, so that instances claiming at once skip
    each other's, not all of them."""
    offer = Offer()
    with sessions.begin() as session:
        if job_claim is not None:
            renew_claim(session, job_claim)
        job = get_job(session, job_id)
        if job_claim is None and lease_holder(job) not in (None, owner):
            return offer  # run by one instance alone (`ferry job resume`): leave it to that one
        overview = session.execute(select(*_OVERVIEW).where(MoveRow.job_id == job_id)).all()
        state = {m.ct: m.state for m in overview}
        offer.yielded = sum(1 for m in overview if m.state == MoveState.YIELDED)
        cancelling = job.state == JobState.CANCELLING
        flying = [m for m in session.execute(select(*_FLYING).where(
            MoveRow.state.in_(MOVE_UNFINISHED), MoveRow.claimed_by.is_not(None))) if move_holder(m)]
        refused: list[Any] = []

        def admits(move: Any, new: list[Any]) -> bool:
            ok = admit(move, [*flying, *new])
            refused.extend([] if ok else [move])
            return ok

        settle, starts = _candidates(overview, state, owner, busy, admits, room, cancelling)
        if fair and (peers := live_participants(session, job_id)) > 1:
            room = min(room, fair_room(overview, owner, len(starts), peers))
            offer.left_to_others, starts = len(starts[room:]), starts[:room]
        wanted = [*settle, *starts]
        # Moves refused for the moves in flight elsewhere (any job) can start once those end: wait.
        waits = (bool(refused) and any(m.claimed_by != owner for m in flying)) or offer.left_to_others > 0
        if not wanted:
            offer.held_elsewhere = waits or _held_elsewhere(overview, owner, cancelling)
            return offer
        query = select(MoveRow).where(MoveRow.id.in_(wanted)).execution_options(populate_existing=True)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        locked = sorted(session.scalars(query), key=lambda m: (not _resumed(m), m.seq))
        for move in locked:
            if not _open(move, cancelling) or move_holder(move) not in (None, owner):
                continue  # changed between the look and the lock
            if not _resumed(move) and _settle(move, state, cancelling=cancelling):
                state[move.ct] = move.state
                continue
            if len(offer.claims) >= room or (not _resumed(move) and (
                    not _ready(move, state) or not admit(move, [*flying, *(m for m, _ in offer.claims)]))):
                continue
            if (claim := _take(session, move, owner, lease_s)) is not None:
                offer.claims.append((move, claim))
        skipped = len(locked) < len(wanted)  # another instance is claiming them
        fresh = session.execute(select(*_OVERVIEW).where(MoveRow.job_id == job_id)).all()
        offer.held_elsewhere = skipped or waits or _held_elsewhere(fresh, owner, cancelling)
    return offer


#: The columns a claim round looks at for every move of the job (not the options, figures, …).
_OVERVIEW = (MoveRow.id, MoveRow.ct, MoveRow.seq, MoveRow.state, MoveRow.step, MoveRow.message, MoveRow.after,
             MoveRow.source, MoveRow.target, MoveRow.predicted, MoveRow.claimed_by, MoveRow.lease_until)


#: The columns of a move in flight that admission counts.
_FLYING = (MoveRow.id, MoveRow.source, MoveRow.target, MoveRow.claimed_by, MoveRow.lease_until)


def _candidates(overview: Sequence[Any], state: dict[str, str], owner: str, busy: set[int], admit: Admit,
                room: int, cancelling: bool) -> tuple[list[int], list[int]]:
    """Ids of the moves worth locking: free ones that end unstarted, and up to ``room`` that may
    start (in flight first, then in plan order, within the caller's limits)."""
    free = sorted((m for m in overview if _open(m, cancelling) and m.id not in busy
                   and move_holder(m) in (None, owner)), key=lambda m: (not _resumed(m), m.seq))
    settle = [m.id for m in free if not _resumed(m) and _ends_unstarted(m, state, cancelling)]
    starts: list[Any] = []
    for move in free:
        if len(starts) >= room or move.id in settle:
            continue
        if _resumed(move) or (_ready(move, state) and admit(move, starts)):
            starts.append(move)
    return settle, [m.id for m in starts]


def fair_room(overview: Sequence[Any], owner: str, ready: int, peers: int) -> int:
    """How many of ``ready`` startable moves ``owner`` may claim so that it holds no more than its
    share of the job's moves in flight (live claims of every instance, and the ready ones), the
    share being an equal part for each of ``peers`` live instances, rounded up."""
    held = [move_holder(m) for m in overview if m.state in MOVE_UNFINISHED]
    held = [h for h in held if h is not None]
    share = -(-(len(held) + ready) // peers)
    return max(0, min(ready, share - held.count(owner)))


def _held_elsewhere(moves: Sequence[Any], owner: str, cancelling: bool) -> bool:
    """Unfinished moves are driven by other live instances (the job is not over for us yet)."""
    return any(_open(m, cancelling) and move_holder(m) not in (None, owner) for m in moves)


def _open(move: Any, cancelling: bool) -> bool:
    """Not over: unfinished, or rolled back with its re-placement still to decide."""
    return move.state in MOVE_UNFINISHED or awaits_replacement(move, cancelling)


def _resumed(move: Any) -> bool:
    """Taken first and outside admission: moves in flight (their holder died) and re-placements to
    decide (service.replacement), neither of which starts a new copy."""
    return move.state in MOVE_IN_FLIGHT or move.state == MoveState.ROLLED_BACK


def _ready(move: Any, state: dict[str, str]) -> bool:
    """Every move it waits for (``after``, within the job) has succeeded."""
    return all(state.get(d) == MoveState.SUCCEEDED for d in move.after if d in state)


def _blocked(move: Any, state: dict[str, str]) -> list[str]:
    """The moves ``move`` waits for that ended without succeeding."""
    return [d for d in move.after if state.get(d) in MOVE_FINAL and state[d] != MoveState.SUCCEEDED]


def _ends_unstarted(move: Any, state: dict[str, str], cancelling: bool) -> bool:
    return cancelling or bool(_blocked(move, state))


def _settle(move: MoveRow, state: dict[str, str], *, cancelling: bool) -> bool:
    """End a pending move that will never start (the job is cancelling, or a move it waits for
    did not succeed); True if it was ended."""
    if cancelling:
        move.state, move.message = MoveState.CANCELLED, "cancelled by operator before it started"
        return True
    blocked = _blocked(move, state)
    if blocked:
        move.state, move.message = MoveState.SKIPPED, f"skipped: move of {blocked[0]} it waits for did not succeed"
        return True
    return False


def _take(session: Session, move: MoveRow, owner: str, lease_s: float) -> MoveClaim | None:
    """Compare-and-set on the move's fencing token; the claim, or None if another took it first."""
    started, seen = time.monotonic(), move.claim_token
    won = session.execute(
        update(MoveRow).where(MoveRow.id == move.id, MoveRow.claim_token == seen)
        .values(claimed_by=owner, claim_token=seen + 1,
                lease_until=utcnow() + dt.timedelta(seconds=lease_s))).rowcount
    if won != 1:
        return None
    return MoveClaim(move.id, move.ct, owner, seen + 1, lease_s, renewed_at=started)


_MOVES = MoveRow.__table__.c
#: The move claim's fenced renewal, built once (a saga runs it on every write); the columns set
#: are the parameters' other keys.
_RENEW_MOVE = update(MoveRow.__table__).where(
    _MOVES.id == bindparam("fence_id"), _MOVES.claimed_by == bindparam("fence_owner"),
    _MOVES.claim_token == bindparam("fence_token"), _MOVES.lease_until >= bindparam("fence_now"))


def renew_move(session: Session, claim: MoveClaim, **changes: Any) -> None:
    """In the caller's transaction: renew the move's lease if the claim still holds (same owner,
    same token, lease not run out), else MoveLost, so the caller's writes are never committed.
    ``changes``: more of the move's columns, written by the same conditional statement (a saga's
    step), so the check costs no statement of its own. Objects the session holds are not updated:
    callers read the move after this, if at all."""
    started, now = time.monotonic(), utcnow()
    held = session.execute(_RENEW_MOVE, {
        "fence_id": claim.move_id, "fence_owner": claim.owner, "fence_token": claim.token, "fence_now": now,
        "lease_until": now + dt.timedelta(seconds=claim.lease_s), **changes}).rowcount
    if held != 1:
        claim.lost = True
        raise MoveLost("ct", claim.ct, f"{claim.owner} no longer holds its move (claim {claim.token}): "
                       "its lease ran out or another instance took it over; stopping without acting")
    claim.renewed_at = started


def renew_moves(sessions: sessionmaker[Session], claims: list[MoveClaim]) -> None:
    """The heartbeat: renew every live claim of this instance; the ones that fail are flagged lost."""
    live = [c for c in claims if not c.lost]
    if not live:
        return
    with sessions.begin() as session:
        for claim in live:
            with contextlib.suppress(MoveLost):  # flagged: its saga stops (and says so) before it acts
                renew_move(session, claim)  # a refused renewal writes nothing: the others still go


def decide_job(sessions: sessionmaker[Session], job_id: int, *, claim: Claim | None = None) -> JobState | None:
    """End the job if every move is final, by a conditional write on its state, so that of several
    instances ending moves at once exactly one records the end; the final state, or None."""
    with sessions.begin() as session:
        if claim is not None:
            renew_claim(session, claim)
        left = session.scalar(select(func.count()).select_from(MoveRow).where(
            MoveRow.job_id == job_id, MoveRow.state.not_in(MOVE_FINAL)))
        job = get_job(session, job_id)
        if left or job.state not in _DECIDABLE:
            return None
        moves = job_moves(session, job_id)
        if any(awaits_replacement(m, job.state == JobState.CANCELLING) for m in moves):
            return None  # its engine (or the next claimant) re-places it first
        old = job.state
        final = finished_job_state((m.state for m in moves), cancelled=old == JobState.CANCELLING)
        message = final_message(final, moves)
        now = utcnow()
        won = session.execute(update(JobRow).where(JobRow.id == job_id, JobRow.state == old).values(
            state=final, message=message, finished_at=now, updated_at=now)).rowcount
        if won != 1:
            return None
        release_locks(session, job_id)
    log_transition(log, f"job {job_id}", old, final, message, job=job_id)
    return final


def final_message(final: JobState, moves: list[MoveRow]) -> str:
    counts = Counter(m.state for m in moves)
    text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    bad = [f"{m.ct}: {m.message}" for m in moves if m.state in MOVE_PROBLEM]
    return f"{final}: {text}" + (f"; first problem: {bad[0]}" if bad else "")


def join_job(sessions: sessionmaker[Session], job_id: int, owner: str) -> JobRow:
    """Take part in running a job without holding it alone: an approved job becomes running (by a
    conditional write, logged once); refused (JobConflict, from claim_job's rule) while one instance
    runs it alone."""
    with sessions.begin() as session:
        job = get_job(session, job_id)
        holder = lease_holder(job)
        if holder not in (None, owner):
            raise JobConflict("job", job_id, f"is being run by {holder} alone")
        if job.state != JobState.APPROVED:
            return job
        now = utcnow()
        won = session.execute(update(JobRow).where(JobRow.id == job_id, JobRow.state == JobState.APPROVED)
                              .values(state=JobState.RUNNING, updated_at=now,
                                      started_at=job.started_at or now)).rowcount
        session.refresh(job)
    if won == 1:
        log_transition(log, f"job {job_id}", JobState.APPROVED, JobState.RUNNING, None, job=job_id)
    return job

