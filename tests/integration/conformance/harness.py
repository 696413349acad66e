"""Drive a move through the real engine: a job store in a directory and ``service.saga.MoveSaga``.

    MoveOrder --SagaStore.run--> job + move rows --MoveSaga.run()--> WatchedBackend --> backend
                                                                        |  hooks at every step
    MoveRun  <-- the move row and its journal, read back from the store --+  (before / after)

Every test that moves a container end to end (the conformance suite, the backend integration
tests, the benches) goes through here, so they exercise what ``ferry`` runs, not a stand-in for
it. The harness writes the move row the way ``service.jobs.create_job`` does and never builds a
``MoveSpec`` itself: the saga derives the spec from the row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adapters.base import Backend, Check, Journal, JournalEntry, MoveSpec, Observation, StepContext
from fleet.model import Inventory
from service.config import EngineSection
from service.saga import MoveOutcome, MoveSaga
from service.store import JobRow, JournalRow, MoveRow, open_database

#: Retries that fit a test: the engine's policy (bounded, exponential) with short waits.
FAST_ENGINE = EngineSection(retry_attempts=5, retry_initial_s=0.02, retry_max_s=0.2, lease_s=30)
CLEANUP_DEFERRED = "cleanup left for later: "


class Crash(BaseException):
    """The engine's process dies: not an error any code path of the saga catches."""


@dataclass(frozen=True)
class MoveOrder:
    """One move as a job stores it. ``options`` is the move row's options (``target_ct``,
    readdressing, ...), exactly what ``create_job`` would write."""

    ct: str
    source: str
    target: str
    method: str = "restart"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dest_ct(self) -> str:
        return str(self.options.get("target_ct") or self.ct)


Hook = Callable[[str, MoveSpec], None]
AfterHook = Callable[[str, MoveSpec, bool], None]


def _no_hook(*_: object) -> None:
    return None


@dataclass
class StepHooks:
    """What a test wants done around each backend call the saga makes (steps and rollback).

    ``before``/``after`` see the step name and spec (``after`` also whether it returned);
    ``repeat`` calls every step twice in a row (idempotence); ``crash_after`` names a step after
    whose action the engine "dies" (:class:`Crash`), leaving the store at ``phase=started``."""

    before: Hook = _no_hook
    after: AfterHook = _no_hook
    repeat: bool = False
    crash_after: str | None = None
    #: A journal that also receives every entry a step journals (besides the store).
    tap: Journal | None = None
    calls: list[str] = field(default_factory=list)


class WatchedBackend(Backend):
    """A backend seen through :class:`StepHooks`; everything else is passed through."""

    def __init__(self, inner: Backend, hooks: StepHooks) -> None:
        self.inner, self.hooks = inner, hooks
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _step(self, name: str, spec: MoveSpec, ctx: StepContext) -> Any:
        hooks = self.hooks
        if hooks.tap is not None:
            tap, store = hooks.tap, ctx.journal
            ctx = StepContext(journal=lambda e: (store(e), tap(e)), progress=ctx.progress,
                              cancelled=ctx.cancelled, figures=ctx.figures)
        hooks.before(name, spec)
        ok = False
        try:
            hooks.calls.append(name)
            result = getattr(self.inner, name)(spec, ctx)
            if hooks.repeat:
                hooks.calls.append(name)
                result = getattr(self.inner, name)(spec, ctx)
            ok = True
        finally:
            hooks.after(name, spec, ok)
        if hooks.crash_after == name:
            hooks.crash_after = None
            raise Crash(f"engine died after {name} acted, before it recorded so")
        return result

    def discover(self) -> Inventory:
        return self.inner.discover()

    def observe(self, spec: MoveSpec) -> Observation:
        return self.inner.observe(spec)

    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        return self._step("preflight", spec, ctx)

    def prepare(self, spec: MoveSpec, ctx: StepContext) -> None:
        self._step("prepare", spec, ctx)

    def presync(self, spec: MoveSpec, ctx: StepContext) -> None:
        self._step("presync", spec, ctx)

    def cutover(self, spec: MoveSpec, ctx: StepContext) -> None:
        self._step("cutover", spec, ctx)

    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        self._step("verify", spec, ctx)

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        self._step("cleanup", spec, ctx)

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        self._step("rollback", spec, ctx)

    def restores(self) -> Any:
        return self.inner.restores()

    def now(self) -> float:
        return self.inner.now()

    def close(self) -> None:
        self.inner.close()


@dataclass
class MoveRun:
    """A move as the store holds it after the saga returned (or died)."""

    outcome: MoveOutcome | None
    job_id: int
    move_id: int
    state: str
    step: str | None
    phase: str | None
    method: str
    message: str
    figures: dict[str, float]
    journal: list[JournalEntry]

    @property
    def events(self) -> list[str]:
        return [str(e.what) for e in self.journal if e.kind == "event"]

    @property
    def retries(self) -> int:
        """How many times the engine retried a step after a transient failure."""
        return sum(1 for text in self.events if text.startswith("retrying "))

    @property
    def fell_back(self) -> bool:
        return any("falling back to" in text for text in self.events)

    @property
    def cleanup_pending(self) -> str:
        """Why cleanup was left for later ("" when it was not): the move stands, its cleanup
        phase is ``pending``, and the message says what remains."""
        if (self.state, self.phase) != ("succeeded", "pending"):
            return ""
        return self.message.partition(CLEANUP_DEFERRED)[2] or self.message

    def commands(self) -> list[JournalEntry]:
        return [e for e in self.journal if e.kind != "event"]

    def api(self) -> list[JournalEntry]:
        return [e for e in self.journal if e.kind == "api"]


class SagaStore:
    """A job store in ``directory`` and the saga run over it, one move at a time."""

    def __init__(self, directory: Path, settings: EngineSection = FAST_ENGINE) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.sessions: sessionmaker[Session] = open_database(f"sqlite:///{directory / 'ferry.db'}")
        self.settings = settings

    def add(self, order: MoveOrder) -> tuple[int, int]:
        """A running job holding one pending move (what create_job + the engine's claim leave)."""
        with self.sessions.begin() as session:
            job = JobRow(kind="rebalance", nodes=[], state="running", plan={}, owner="conformance")
            session.add(job)
            session.flush()
            move = MoveRow(job_id=job.id, seq=0, ct=order.ct, source=order.source, target=order.target,
                           method=order.method, options=dict(order.options), predicted={})
            session.add(move)
            session.flush()
            return job.id, move.id

    def saga(self, backend: Backend, job_id: int, move_id: int, hooks: StepHooks | None = None,
             **saga_kw: Any) -> MoveSaga:
        watched = WatchedBackend(backend, hooks or StepHooks())
        return MoveSaga(self.sessions, watched, self.settings, job_id, move_id, owner="conformance", **saga_kw)

    def run(self, backend: Backend, order: MoveOrder, hooks: StepHooks | None = None,
            **saga_kw: Any) -> MoveRun:
        """Store ``order`` as a new move and run it to its end (or to a :class:`Crash`)."""
        job_id, move_id = self.add(order)
        return self.resume(backend, job_id, move_id, hooks, **saga_kw)

    def resume(self, backend: Backend, job_id: int, move_id: int, hooks: StepHooks | None = None,
               **saga_kw: Any) -> MoveRun:
        """Run the stored move again, as a restarted engine would; a Crash leaves it unfinished."""
        outcome = None
        try:
            outcome = self.saga(backend, job_id, move_id, hooks, **saga_kw).run()
        except Crash:
            pass
        return self.read(job_id, move_id, outcome)

    def retry_cleanup(self, backend: Backend, run: MoveRun) -> MoveRun:
        """``ferry cleanup`` for one move whose cleanup was left for later."""
        outcome = self.saga(backend, run.job_id, run.move_id).retry_cleanup()
        return self.read(run.job_id, run.move_id, outcome)

    def read(self, job_id: int, move_id: int, outcome: MoveOutcome | None = None) -> MoveRun:
        with self.sessions() as session:
            move = session.get(MoveRow, move_id)
            assert move is not None
            rows = session.scalars(select(JournalRow).where(JournalRow.job_id == job_id)
                                   .order_by(JournalRow.id)).all()
            journal = [JournalEntry(r.host, r.what, r.status, r.duration_ms, kind=r.kind,  # type: ignore[arg-type]
                                    detail=r.detail or {}) for r in rows]
            return MoveRun(outcome, job_id, move_id, move.state, move.step, move.phase, move.method,
                           move.message, dict(move.figures or {}), journal)


def run_move(backend: Backend, order: MoveOrder, directory: Path, hooks: StepHooks | None = None,
             **saga_kw: Any) -> MoveRun:
    """One move through the real engine, with its store in ``directory``."""
    return SagaStore(directory).run(backend, order, hooks, **saga_kw)
