"""One move as a saga: steps in order, each journaled before and after, retried, compensated.

    preflight -> prepare -> presync -> cutover -> verify -> cleanup -> succeeded
         \\___________\\__________\\__________\\_________\\--> rollback -> rolled_back / failed

Before a step acts, the store records ``step=X, phase=started``; after, ``phase=done``. A process
that dies in between leaves ``started``: on resume the step is called again, and because every
backend step observes before it acts (adapters/base.py), it completes what is missing instead of
repeating what was done. The journal shows such a resumption as an ``event``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from adapters.base import (
    STEPS,
    Backend,
    BackendError,
    Cancelled,
    CleanupPending,
    JournalEntry,
    MoveSpec,
    PermanentError,
    RefusedError,
    Step,
    StepContext,
    TransientError,
    run_step,
)
from fleet.policy import Policy
from service.config import EngineSection
from service.jobs import add_journal, learn_link, release_locks
from service.movespec import build_spec
from service.slots import TransferSlots
from service.store import MoveRow

DATA_STEPS = (Step.PRESYNC, Step.CUTOVER)
#: The method to try when a backend refuses one (RefusedError).
FALLBACK = {"live": "restart", "restart": "dump"}
Progress = Callable[[str, str, int, int], None]  # ct, step, done, total


@dataclass
class MoveOutcome:
    ct: str
    state: str
    message: str


class MoveSaga:
    """Drives one stored move to a final state through a backend."""

    def __init__(self, sessions: sessionmaker[Session], backend: Backend, settings: EngineSection,
                 job_id: int, move_id: int, *, owner: str, progress: Progress | None = None,
                 cancelled: Callable[[], bool] = lambda: False, slots: TransferSlots | None = None,
                 policy: Policy | None = None) -> None:
        self.sessions = sessions
        self.backend = backend
        self.settings = settings
        self.job_id = job_id
        self.move_id = move_id
        self.owner = owner
        self.progress = progress
        self.cancelled = cancelled
        self.slots = slots
        self.policy = policy

    # -- store helpers -----------------------------------------------------------------------
    def _move(self) -> MoveRow:
        with self.sessions() as session:
            move = session.get(MoveRow, self.move_id)
            assert move is not None
            return move

    def _update(self, **fields: object) -> None:
        with self.sessions.begin() as session:
            move = session.get(MoveRow, self.move_id)
            assert move is not None
            for key, value in fields.items():
                setattr(move, key, value)

    def _event(self, ct: str, step: str | None, text: str, status: int | None = None) -> None:
        add_journal(self.sessions, self.job_id, ct, step,
                    JournalEntry("ferry", text, status, 0.0, kind="event"))

    def _spec(self, move: MoveRow) -> MoveSpec:
        return build_spec(move, self.job_id, self.policy)

    def _retrying(self, before_sleep: Callable[[RetryCallState], None]) -> Retrying:
        """Transient failures: bounded tries, exponential backoff with jitter (engine settings)."""
        initial = self.settings.retry_initial_s
        return Retrying(
            retry=retry_if_exception_type(TransientError), reraise=True, before_sleep=before_sleep,
            stop=stop_after_attempt(self.settings.retry_attempts),
            wait=wait_exponential_jitter(multiplier=initial, jitter=initial, max=self.settings.retry_max_s),
        )

    # -- running -----------------------------------------------------------------------------
    def run(self) -> MoveOutcome:
        move = self._move()
        if move.state in ("succeeded", "failed", "rolled_back", "skipped", "cancelled"):
            return MoveOutcome(move.ct, move.state, move.message)
        start = 0
        if move.step is not None:
            index = STEPS.index(Step(move.step))
            start = index + 1 if move.phase == "done" else index
            if move.phase == "started":
                self._event(move.ct, move.step, f"resuming: outcome of {move.step} unknown, "
                            "observing before acting")
        if move.state == "rolling_back":
            return self._compensate(move, "resumed an interrupted rollback")
        self._update(state="running", claimed_by=self.owner,
                     started_at=move.started_at or self.backend.now())
        figures: dict[str, float] = dict(move.figures or {})
        with contextlib.ExitStack() as slot:
            holding = False
            for step in STEPS[start:]:
                move = self._move()
                if self.cancelled() and step != Step.CLEANUP:
                    slot.close()
                    return self._compensate(move, "cancelled by operator")
                if step in DATA_STEPS and self.slots and not holding:
                    try:
                        slot.enter_context(self.slots.hold(move.source, move.target, self.cancelled))
                    except TimeoutError:
                        return self._compensate(move, "cancelled by operator while waiting to copy")
                    holding = True
                failure = self._attempt(move, step, figures)
                if step == Step.CUTOVER or failure is not None:
                    slot.close()  # the copy is over (or abandoned): free the link for the next move
                    holding = False
                if isinstance(failure, RefusedError) and move.method in FALLBACK:
                    return self._fall_back(move, str(failure))
                if failure is not None and step == Step.CLEANUP:  # destination verified: it stands
                    self._update(phase="pending")  # `ferry cleanup` calls cleanup again later
                    return self._finish(move, figures, f"moved; cleanup left for later: {failure}")
                if isinstance(failure, Cancelled):
                    return self._compensate(move, f"cancelled by operator during {step}")
                if failure is not None:
                    return self._compensate(move, f"{step} failed: {failure}")
        return self._finish(self._move(), figures, "")

    def _attempt(self, move: MoveRow, step: Step, figures: dict[str, float]) -> BackendError | None:
        """Run one step (with retries); the error that ended it, if any."""
        try:
            self._do_step(move, step, figures)
        except (RefusedError, PermanentError, TransientError, Cancelled, CleanupPending) as exc:
            return exc
        return None

    def _do_step(self, move: MoveRow, step: Step, figures: dict[str, float]) -> None:
        self._update(step=step.value, phase="started")
        ctx = StepContext(
            journal=lambda entry: add_journal(self.sessions, self.job_id, move.ct, step.value, entry),
            progress=lambda done, total: self.progress and self.progress(move.ct, step.value, done, total),
            cancelled=self.cancelled,
        )
        spec = self._spec(move)
        retrying = self._retrying(
            lambda rs: self._event(move.ct, step.value, f"retrying {step}: {rs.outcome.exception()}"))
        for attempt in retrying:
            with attempt:
                result = run_step(self.backend, step, spec, ctx)
        if step == Step.PREFLIGHT:
            self._judge_preflight(move, result)
        for key, value in ctx.figures.items():
            figures[key] = figures.get(key, 0.0) + value
        self._update(phase="done", figures=dict(figures))

    def _judge_preflight(self, move: MoveRow, checks: list) -> None:
        failed = [c for c in checks if not c.ok]
        blocking = [c for c in failed if c.blocks == "move"]
        if blocking:
            raise PermanentError("; ".join(f"{c.name}: {c.detail}" for c in blocking))
        if failed and move.method == "live":
            raise RefusedError("; ".join(f"{c.name}: {c.detail}" for c in failed))
        for check in checks:
            self._event(move.ct, "preflight", f"check {check.name}: {'ok' if check.ok else check.detail}")

    def retry_cleanup(self) -> MoveOutcome:
        """Call cleanup again for a succeeded move whose cleanup was left for later."""
        move = self._move()
        ctx = StepContext(journal=lambda e: add_journal(self.sessions, self.job_id, move.ct, "cleanup", e))
        try:
            self.backend.cleanup(self._spec(move), ctx)
        except BackendError as exc:
            self._update(message=f"moved; cleanup left for later: {exc}")
            return MoveOutcome(move.ct, "succeeded", str(exc))
        self._update(phase="done", message=f"moved to {move.target}; cleanup done")
        self._event(move.ct, "cleanup", "deferred cleanup done")
        return MoveOutcome(move.ct, "succeeded", "cleanup done")

    def _rollback_context(self, move: MoveRow) -> StepContext:
        return StepContext(journal=lambda e: add_journal(self.sessions, self.job_id, move.ct, "rollback", e))

    def _fall_back(self, move: MoveRow, why: str) -> MoveOutcome:
        """A method was refused for a reason the next one avoids (live -> restart: no checkpoint
        or kernel match needed; restart -> dump: no direct node-to-node migration needed). Undo
        what the refused attempt did, then start the move again with the next method."""
        method = FALLBACK[move.method]
        self._event(move.ct, move.step, f"{move.method} move refused ({why}); falling back to {method}")
        try:
            self.backend.rollback(self._spec(move), self._rollback_context(move))
        except BackendError as exc:
            return self._compensate(move, f"{move.method} refused and its undo failed: {exc}")
        self._update(method=method, step=None, phase=None)
        return self.run()

    def _compensate(self, move: MoveRow, why: str) -> MoveOutcome:
        self._update(state="rolling_back", message=why)
        self._event(move.ct, move.step, f"rolling back: {why}")
        spec = self._spec(move)
        ctx = self._rollback_context(move)
        for attempt in self._retrying(lambda rs: self._event(move.ct, "rollback", "retrying rollback")):
            with attempt:
                try:
                    self.backend.rollback(spec, ctx)
                except PermanentError as exc:
                    return self._end(move, "failed", f"{why}; rollback impossible: {exc}")
        state = "cancelled" if why.startswith("cancelled") else "rolled_back"
        return self._end(move, state, f"{why}; rolled back: {move.ct} runs on {move.source}")

    def _finish(self, move: MoveRow, figures: dict[str, float], note: str) -> MoveOutcome:
        now = self.backend.now()
        elapsed = max(1e-6, now - (move.started_at or now))
        figures["duration_s"] = round(elapsed, 3)
        if figures.get("bytes") and figures.get("transfer_s"):
            learn_link(self.sessions, move.source, move.target,
                       figures["bytes"] / 1048576 / figures["transfer_s"], self.settings.learn_weight)
        self._update(figures=figures, finished_at=now)
        return self._end(move, "succeeded", note or f"moved to {move.target}")

    def _end(self, move: MoveRow, state: str, message: str) -> MoveOutcome:
        with self.sessions.begin() as session:
            row = session.get(MoveRow, self.move_id)
            assert row is not None
            row.state, row.message, row.claimed_by = state, message, None
            release_locks(session, self.job_id, move.ct)
        self._event(move.ct, None, f"{state}: {message}")
        if self.progress:
            self.progress(move.ct, "done", 1, 1)
        return MoveOutcome(move.ct, state, message)
