"""One move as a saga: steps in order, each journaled before and after, retried, compensated.

    for method in live -> restart -> dump (lifecycle.FALLBACK, while the backend refuses one):
        for step in preflight .. cleanup, as lifecycle.STEP_POLICY[step] says: cancelled? roll back;
            run it (in a transfer slot if it holds one); failed? roll back, defer or fall back
    all done -> succeeded

The store records ``step=X, phase=started`` before a step acts and ``phase=done`` after. A process
that dies in between leaves ``started``: on resume the saga observes both ends of the move and
journals what it saw, then calls the step again, which completes what is missing (every backend
step observes before it acts: adapters/base.py). Given the engine's claims (the job's when one
instance runs it alone, the move's always: service.move_claims), every write checks (and renews)
them in the same transaction, so a saga whose claim was taken over raises LeaseLost (MoveLost)
before its next step instead of acting. A write is one transaction: the move claim's conditional
UPDATE carries the row's new columns, and the journal entries that belong to it (a pre-flight's
checks, a rollback's reason, the move's end) go in with it, so a refused write records nothing.
The saga reads its row once and keeps its own copy in step with what it writes (while it holds the
move nobody else writes more than the lease). A claim not renewed for a whole lease counts as lost even
before the store says so: a copy in progress stops, and nothing is rolled back by a saga that may
no longer own the move.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import tenacity
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from adapters.base import (
    FACTS,
    Backend,
    BackendError,
    Cancelled,
    JournalEntry,
    MoveSpec,
    PermanentError,
    Step,
    StepContext,
    TransientError,
    actor_for,
    run_step,
    steps_for,
)
from fleet.policy import Policy
from service import lifecycle
from service.config import EngineSection
from service.jobs import (
    JOURNAL_INSERT,
    Claim,
    add_journal,
    journal_values,
    learn_link,
    release_locks,
    renew_claim,
)
from service.lifecycle import Cause, MoveOutcome, MoveState, OnFailure, Phase
from service.logs import log_transition
from service.move_claims import MoveClaim, MoveLost, renew_move
from service.movespec import build_spec
from service.replacement import awaits_replacement
from service.slots import FleetSlots
from service.store import MoveRow, utcnow

log = logging.getLogger("ferry.saga")

Progress = Callable[[str, str, int, int], None]  # ct, step, done, total


@dataclass(frozen=True)
class _Stop:  # where one pass over the steps ended; ``step is None``: every step is done
    step: Step | None = None
    reaction: OnFailure | None = None
    cause: Cause = Cause.FAILURE
    why: str = ""
    error: BackendError | None = None


class MoveSaga:
    """Drives one stored move to a final state through a backend."""

    def __init__(self, sessions: sessionmaker[Session], backend: Backend, settings: EngineSection,
                 job_id: int, move_id: int, *, owner: str, claim: Claim | None = None,
                 progress: Progress | None = None,
                 cancelled: Callable[[], bool] = lambda: False, slots: FleetSlots | None = None,
                 policy: Policy | None = None, move_claim: MoveClaim | None = None) -> None:
        self.sessions, self.backend, self.settings = sessions, backend, settings
        self.job_id, self.move_id, self.owner, self.claim = job_id, move_id, owner, claim
        self.progress, self.slots, self.policy = progress, slots, policy
        self.move_claim = move_claim
        self._asked_to_cancel = cancelled
        #: The move's share of its nodes' bandwidth budgets while it holds a transfer slot.
        self._share: float | None = None
        #: The saga's copy of its move's row (_move).
        self._row: MoveRow | None = None

    def cancelled(self) -> bool:
        """Stop what runs now: the operator cancelled, or the move's claim may be lost (then
        _fenced raises MoveLost before anything is undone)."""
        return self._asked_to_cancel() or (self.move_claim is not None and self.move_claim.expired())

    def _fenced(self) -> None:
        """MoveLost once the move's claim is lost or not renewed for a whole lease."""
        if self.move_claim is not None and self.move_claim.expired():
            raise MoveLost("ct", self.move_claim.ct, f"{self.owner}'s claim {self.move_claim.token} on the move "
                           "was not renewed within its lease; stopping without acting")

    def _move(self) -> MoveRow:
        """The move as stored. Read once; after that the saga's own copy, which every write of
        _update changes as it changes the row: while the saga holds the move, nobody else writes
        more than its lease (service.move_claims), and a write after a takeover is refused."""
        if self._row is None:
            with self.sessions() as session:
                self._row = session.get(MoveRow, self.move_id)
                assert self._row is not None
        return self._row

    def _update(self, *, hold: bool = False, tried: bool = False, events: Sequence[tuple[str | None, str]] = (),
                release: bool = False, also: Callable[[Session], None] | None = None, **fields: Any) -> bool:
        """Write ``fields`` and journal ``events`` ((step, text) each) in one transaction; True if
        written. ``hold`` (re)news this saga's claim on the move for ``engine.lease_s``, ``tried``
        counts one more try of the move (its first, a retry of a step, a fallback), ``release``
        lets the move's claim go and its container's lock (the move's end), ``also`` writes more in
        the same transaction (the link figure the move measured). Refused (LeaseLost)
        when the saga's job or move claim is no longer ours: the claims are checked by the same
        conditional statements that write the job's lease and the move's row. Not written when
        the move is to start but ended already (yielded to a higher job, service.preemption)."""
        move = self._move()
        old, now = move.state, utcnow()
        changes = dict(fields, **({"attempts": move.attempts + 1} if tried else {}))
        if hold and self.move_claim is None:  # a claimed move's lease goes with renew_move
            changes["claimed_by"], changes["lease_until"] = self.owner, now + dt.timedelta(seconds=self.settings.lease_s)
        if release and (self.move_claim is None or not awaits_replacement(_ended(move, fields), cancelling=False)):
            changes["claimed_by"] = changes["lease_until"] = None  # else kept until it is re-placed
        with self.sessions.begin() as session:
            self._fenced()
            if self.claim is not None:
                renew_claim(session, self.claim)
            if fields.get("state") == MoveState.RUNNING and _stored_state(session, self.move_id) in lifecycle.MOVE_FINAL:
                if self.move_claim is not None:
                    renew_move(session, self.move_claim)  # a lost claim says so first, as for any write
                self._row = None  # read again: it ended elsewhere
                return False
            if self.move_claim is not None:
                renew_move(session, self.move_claim, **changes)
            elif changes:
                session.execute(update(MoveRow.__table__).where(MoveRow.id == self.move_id).values(changes))
            if release:
                release_locks(session, self.job_id, move.ct)
            if also is not None:
                also(session)
            if events:
                session.execute(JOURNAL_INSERT, [journal_values(
                    self.job_id, move.ct, step, JournalEntry("ferry", text, None, 0.0, kind="event"))
                    for step, text in events])
        for key, value in changes.items():
            setattr(move, key, value)
        if "state" in fields and fields["state"] != old:
            self._log_state(move.ct, old, str(fields["state"]), str(fields.get("message") or "") or None)
        return True

    def _log_state(self, ct: str, old: str | None, new: str, reason: str | None = None) -> None:
        log_transition(log, f"job {self.job_id} move {ct}", old, new, reason, job=self.job_id,
                       move=self.move_id, ct=ct)

    def _event(self, ct: str, step: str | None, text: str) -> None:
        add_journal(self.sessions, self.job_id, ct, step, JournalEntry("ferry", text, None, 0.0, kind="event"))

    def _context(self, move: MoveRow, step: str, **kwargs: Any) -> StepContext:
        """What a backend step gets: a journal writing under ``step``, and ``kwargs``."""
        return StepContext(journal=lambda e: add_journal(self.sessions, self.job_id, move.ct, step, e), **kwargs)

    def _spec(self, move: MoveRow) -> MoveSpec:
        """The backend's request; inside a transfer slot, capped at the slot's bandwidth share."""
        spec = build_spec(move, self.job_id, self.policy)
        if self._share is not None and (spec.bwlimit_mb_s is None or self._share < spec.bwlimit_mb_s):
            spec = dataclasses.replace(spec, bwlimit_mb_s=self._share)
        return spec

    def _retrying(self, before_sleep: Callable[[tenacity.RetryCallState], None]) -> tenacity.Retrying:
        """Transient failures: bounded tries, exponential backoff with jitter (engine settings)."""
        initial, most = self.settings.retry_initial_s, self.settings.retry_max_s
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError), reraise=True, before_sleep=before_sleep,
            stop=tenacity.stop_after_attempt(self.settings.retry_attempts),
            wait=tenacity.wait_exponential_jitter(multiplier=initial, jitter=initial, max=most))

    def run(self) -> MoveOutcome:
        self._row = None  # the row as stored now
        move = self._move()
        if move.state in lifecycle.MOVE_FINAL:
            return MoveOutcome(move.ct, MoveState(move.state), move.message)
        if move.state == MoveState.ROLLING_BACK:
            cause = Cause.CANCEL if self.cancelled() else Cause.FAILURE
            return self._compensate(move, cause, "resumed an interrupted rollback")
        if not self._update(hold=True, tried=move.state == MoveState.PENDING, state=MoveState.RUNNING,
                            started_at=move.started_at or self.backend.now()):
            move = self._move()  # taken over: it never started
            return MoveOutcome(move.ct, MoveState(move.state), move.message)
        figures: dict[str, float] = dict(move.figures or {})
        while True:  # one pass per method, while the backend refuses them (live -> restart -> dump)
            stop = self._walk(figures)
            move = self._move()
            if stop.step is None:
                return self._finish(move, figures, "")
            if stop.reaction is OnFailure.DEFER:  # destination verified: the move stands
                self._update(phase=Phase.PENDING)  # `ferry cleanup` calls cleanup again later
                return self._finish(move, figures, f"moved; cleanup left for later: {stop.error}")
            if stop.reaction is OnFailure.ROLL_BACK:
                return self._compensate(move, stop.cause, stop.why)
            if (undo_failed := self._fall_back(move, str(stop.error))) is not None:
                return undo_failed

    def _walk(self, figures: dict[str, float]) -> _Stop:
        """Run the move's steps from where the store says it is, until one stops it or all are done."""
        move = self._move()
        if move.phase == Phase.STARTED:
            self._observe(move)
        steps = steps_for(self._spec(move))
        with contextlib.ExitStack() as slot:
            holding = False
            for step in steps[lifecycle.resume_index(move.step, move.phase, steps):]:
                policy, move = lifecycle.STEP_POLICY[step], self._move()
                if holding and not policy.holds_slot:
                    slot.close()  # the copy is over: free the link for the next move
                    holding, self._share = False, None
                self._fenced()
                if policy.cancellable and self.cancelled():
                    return _Stop(step, OnFailure.ROLL_BACK, Cause.CANCEL, "cancelled by operator")
                if policy.holds_slot and self.slots and self.move_claim and not holding:
                    try:
                        self._share = slot.enter_context(self.slots.hold(move, self.move_claim, self.cancelled))
                    except TimeoutError:
                        self._fenced()
                        return _Stop(step, OnFailure.ROLL_BACK, Cause.CANCEL,
                                     "cancelled by operator while waiting to copy")
                    holding = True
                if (error := self._attempt(move, step, figures)) is None:
                    continue
                self._fenced()  # a step stopped because the claim may be lost is not rolled back
                cause = Cause.CANCEL if isinstance(error, Cancelled) else Cause.FAILURE
                why = (f"cancelled by operator during {step}" if cause is Cause.CANCEL
                       else f"{step} failed: {error}")
                return _Stop(step, policy.reaction(error, move.method), cause, why, error)
        return _Stop()

    def _observe(self, move: MoveRow) -> None:
        """Journal both ends of a move whose step's outcome is unknown, before calling it again."""
        try:
            seen = actor_for(self.backend, self._spec(move)).observe(self._spec(move))
            what = (f"source {seen.source.node} {seen.source.status}, "
                    f"destination {seen.target.node} {seen.target.status}")
        except BackendError as exc:
            what = f"could not observe ({exc}); the step observes for itself"
        self._update(tried=True, events=[(move.step, f"resuming: outcome of {move.step} unknown; observed {what}")])

    def _attempt(self, move: MoveRow, step: Step, figures: dict[str, float]) -> BackendError | None:
        """Run one step (transient errors retried); the error that ended it, if any."""
        self._update(hold=True, step=step.value, phase=Phase.STARTED)
        ctx = self._context(move, step.value, cancelled=self.cancelled, progress=lambda done, total: (
            self.progress and self.progress(move.ct, step.value, done, total)))
        spec = self._spec(move)

        def retried(rs: tenacity.RetryCallState) -> None:
            self._update(tried=True, events=[(step.value, f"retrying {step}: {rs.outcome.exception()}")])

        try:
            for attempt in self._retrying(retried):
                with attempt:
                    result = run_step(self.backend, step, spec, ctx)
            if step == Step.PREFLIGHT:
                lifecycle.raise_for_checks(result, move.method)
        except BackendError as exc:
            return exc
        checks = [(step.value, f"check {check.name}: {'ok' if check.ok else check.detail}")
                  for check in (result if step == Step.PREFLIGHT else [])]
        for key, value in ctx.figures.items():
            figures[key] = figures.get(key, 0.0) + value
        self._update(phase=Phase.DONE, figures=dict(figures), events=checks, **self._learned(move, ctx))
        return None

    @staticmethod
    def _learned(move: MoveRow, ctx: StepContext) -> dict[str, Any]:
        """The move's options with the facts the step learned added (the first value stands), to
        be written with the step's end; nothing if it learned nothing new."""
        unknown = sorted(set(ctx.facts) - set(FACTS))
        if unknown:
            raise ValueError(f"move of {move.ct}: a step reported unknown facts {unknown}")
        stored = dict(move.options or {})
        new = {key: bool(value) for key, value in ctx.facts.items() if key not in stored}
        return {"options": {**stored, **new}} if new else {}

    def retry_cleanup(self) -> MoveOutcome:
        """Call cleanup again for a succeeded move whose cleanup was left for later."""
        self._row = None
        move = self._move()
        try:
            run_step(self.backend, Step.CLEANUP, self._spec(move), self._context(move, Step.CLEANUP))
        except BackendError as exc:
            self._update(message=f"moved; cleanup left for later: {exc}")
            return MoveOutcome(move.ct, MoveState.SUCCEEDED, str(exc))
        self._update(phase=Phase.DONE, message=f"moved to {move.target}; cleanup done",
                     events=[("cleanup", "deferred cleanup done")])
        return MoveOutcome(move.ct, MoveState.SUCCEEDED, "cleanup done")

    def _fall_back(self, move: MoveRow, why: str) -> MoveOutcome | None:
        """Undo what the refused method did and set the move up for the next one; the outcome only
        if the undo failed (then the move is rolled back)."""
        method = lifecycle.FALLBACK[move.method]
        # the claims still hold before the undo acts
        self._update(events=[(move.step, f"{move.method} move refused ({why}); falling back to {method}")])
        spec, ctx = self._spec(move), self._context(move, "rollback")
        try:  # transient failures (a refused SSH channel, an HTTP 503) are retried, as in any step
            for attempt in self._retrying(lambda rs: self._event(move.ct, "rollback", "retrying the undo of "
                                                                 f"{move.method}: {rs.outcome.exception()}")):
                with attempt:
                    self.backend.rollback(spec, ctx)
        except BackendError as exc:
            return self._compensate(move, Cause.FAILURE, f"{move.method} refused and its undo failed: {exc}")
        self._update(hold=True, method=method, step=None, phase=None, tried=True)
        return None

    def _compensate(self, move: MoveRow, cause: Cause, why: str) -> MoveOutcome:
        self._update(hold=True, state=MoveState.ROLLING_BACK, message=why, events=[(move.step, f"rolling back: {why}")])
        spec = self._spec(move)
        ctx = self._context(move, "rollback")
        for attempt in self._retrying(lambda rs: self._event(move.ct, "rollback", "retrying rollback")):
            with attempt:
                try:
                    actor_for(self.backend, spec).rollback(spec, ctx)
                except PermanentError as exc:
                    return self._end(move, MoveState.FAILED, f"{why}; rollback impossible: {exc}", cause)
        back = (f"{why}; rolled back: the restored copy is removed, {move.ct} stays down with {move.source}"
                if spec.archive is not None else f"{why}; rolled back: {move.ct} runs on {move.source}")
        return self._end(move, lifecycle.ROLLED_BACK_STATE[cause], back, cause)

    def _finish(self, move: MoveRow, figures: dict[str, float], note: str) -> MoveOutcome:
        now = self.backend.now()
        elapsed = max(1e-6, now - (move.started_at or now))
        figures["duration_s"] = round(elapsed, 3)
        link = None
        if figures.get("bytes") and figures.get("transfer_s"):
            link = functools.partial(learn_link, source=move.source, target=move.target,
                                     mb_s=figures["bytes"] / 1048576 / figures["transfer_s"],
                                     weight=self.settings.learn_weight)
        return self._end(move, MoveState.SUCCEEDED, note or f"moved to {move.target}", also=link,
                         figures=figures, finished_at=now)

    def _end(self, move: MoveRow, state: MoveState, message: str, cause: Cause | None = None,
             also: Callable[[Session], None] | None = None, **fields: Any) -> MoveOutcome:
        """Record the move's final state (with ``fields`` and ``also``, see _update) and its
        journal entry in one transaction."""
        self._update(release=True, state=state, message=message, events=[(None, f"{state}: {message}")],
                     also=also, **fields)
        if self.progress:
            self.progress(move.ct, lifecycle.PROGRESS_END, 1, 1)
        return MoveOutcome(move.ct, state, message, cause)


def _stored_state(session: Session, move_id: int) -> str | None:
    """The move's state as stored, its row locked for the rest of the transaction (PostgreSQL; on
    SQLite the transaction holds the write lock already)."""
    return session.scalar(select(MoveRow.state).where(MoveRow.id == move_id).with_for_update())


def _ended(move: MoveRow, fields: dict[str, Any]) -> Any:
    """The columns service.replacement looks at, as ``move`` will be once ``fields`` are written."""
    return SimpleNamespace(**{key: fields.get(key, getattr(move, key)) for key in ("state", "step", "message")})
