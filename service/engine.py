"""The migration engine: runs a job's moves through a backend, within limits, resumably.

    job (store) --ready moves in plan order--> limits (fleet / per source / per target)
        --> thread pool --> MoveSaga per move --> outcomes --> job state

A move is ready when every move named in its ``after`` has succeeded; if one of those failed, it
is skipped with the reason. Moves a dead process left running are resumed first (their sagas
observe before they act). The engine heartbeats a lease on the job, so that a second ferry can see
that the first one died, and reads pause / cancel requests from the store, so that they work from
any process. Every write it and its sagas make checks the claim's fencing token: an engine whose
claim was taken over (it stalled past its lease) raises LeaseLost and starts nothing more.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adapters.base import Backend
from fleet.errors import InputError
from fleet.policy import Policy
from service.config import EngineSection
from service.jobs import Claim, claim_job, get_job, pending_cleanups, renew_claim, set_job_state
from service.lifecycle import (
    JOB_ADVANCING,
    JOB_FINAL,
    MOVE_FINAL,
    MOVE_IN_FLIGHT,
    MOVE_PROBLEM,
    MOVE_UNFINISHED,
    JobState,
    MoveState,
    finished_job_state,
)
from service.saga import MoveSaga, Progress
from service.slots import ADMISSION_DEPTH, TransferSlots
from service.store import MoveRow, job_moves

_TICK_S = 0.1
#: How often the engine re-reads the job's control state (pause / cancel) from the store.
_CONTROL_EVERY_S = 0.5


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class JobSummary:
    job_id: int
    state: str
    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    predicted_makespan_s: float = 0.0
    predicted_duration_s: float = 0.0
    predicted_downtime_s: float = 0.0
    observed_duration_s: float = 0.0
    observed_downtime_s: float = 0.0
    makespan_s: float = 0.0
    messages: list[str] = field(default_factory=list)
    #: Restores from backups: the largest data age of a restored container (the writes lost).
    rpo_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Engine:
    def __init__(self, sessions: sessionmaker[Session], backend: Backend, policy: Policy,
                 settings: EngineSection, *, owner: str | None = None, progress: Progress | None = None,
                 hold: Callable[[int], bool] | None = None,
                 may_start: Callable[[MoveRow], bool] | None = None) -> None:
        self.sessions = sessions
        self.backend = backend
        self.policy = policy
        self.settings = settings
        self.owner = owner or instance_name()
        self.progress = progress
        #: While ``hold(job_id)`` is true the job acts as paused (no new moves) without the store
        #: saying so: ``ferry serve`` uses it for closed maintenance windows and for shutting down.
        self.hold = hold
        #: A move not yet started starts only if ``may_start(move)`` (``ferry serve``: only if its
        #: predicted duration fits in what is left of the maintenance window).
        self.may_start = may_start
        self._control: tuple[str, float] = (JobState.RUNNING, 0.0)
        self.claim: Claim | None = None

    def _job_state(self, job_id: int) -> str:
        """The job's control state, re-read (and the claim renewed) every _CONTROL_EVERY_S;
        LeaseLost once the claim is no longer ours."""
        state, read_at = self._control
        if time.monotonic() - read_at >= _CONTROL_EVERY_S:
            with self.sessions.begin() as session:
                if self.claim is not None:
                    renew_claim(session, self.claim)
                state = get_job(session, job_id).state
            self._control = (state, time.monotonic())
        if self.hold is not None and state in JOB_ADVANCING and self.hold(job_id):
            return JobState.PAUSED
        return state

    def run_job(self, job_id: int) -> JobSummary:
        """Run (or resume) a job until every move is final, or the job is paused."""
        job = claim_job(self.sessions, job_id, self.owner, self.settings.lease_s)
        self.claim = Claim(job_id, self.owner, job.claim_token, self.settings.lease_s)
        if job.state == JobState.PENDING:
            raise InputError("job", job_id, "is pending: approve it with 'ferry job resume ID'")
        if job.state in JOB_FINAL:
            return self.summary(job_id)
        if job.state != JobState.CANCELLING:
            set_job_state(self.sessions, job_id, JobState.RUNNING, claim=self.claim)
        self._control = (JobState.RUNNING, 0.0)
        world_start = self.backend.now()
        self.slots = TransferSlots(self.policy)
        workers = self.policy.max_parallel * ADMISSION_DEPTH
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="move") as pool:
            self._schedule(job_id, pool)
        state = self._job_state_now(job_id)
        summary = self.summary(job_id)
        if state == JobState.PAUSED or any(summary.counts.get(s) for s in MOVE_UNFINISHED):
            return summary  # held or gated: the job goes on later, from the store
        final = self._final_state(job_id, cancelled=state == JobState.CANCELLING)
        set_job_state(self.sessions, job_id, final, self._final_message(job_id, final), claim=self.claim)
        summary = self.summary(job_id)
        summary.makespan_s = max(summary.makespan_s, self.backend.now() - world_start)
        return summary

    def _job_state_now(self, job_id: int) -> str:
        self._control = ("", 0.0)
        return self._job_state(job_id)

    def _schedule(self, job_id: int, pool: ThreadPoolExecutor) -> None:
        with self.sessions() as session:
            moves = job_moves(session, job_id)
        state = {m.ct: m.state for m in moves}
        running: dict[Future[Any], MoveRow] = {}
        cancelling = False
        while True:
            control = self._job_state(job_id)
            cancelling = cancelling or control == JobState.CANCELLING
            if control != JobState.PAUSED or cancelling:
                self._start_ready(job_id, moves, state, running, pool, cancelling)
            if not running:  # nothing in flight: pending moves can only be gated (or paused)
                return
            done, _ = wait(list(running), timeout=_TICK_S, return_when=FIRST_COMPLETED)
            for future in done:
                move = running.pop(future)
                state[move.ct] = future.result().state

    def _start_ready(self, job_id: int, moves: list[MoveRow], state: dict[str, str],
                     running: dict[Future[Any], MoveRow], pool: ThreadPoolExecutor, cancelling: bool) -> None:
        out, into = Counter(m.source for m in running.values()), Counter(m.target for m in running.values())
        # Moves a dead process left in flight come first: they already hold resources.
        order = sorted(moves, key=lambda m: (m.state not in MOVE_IN_FLIGHT, m.seq))
        busy = {m.ct for m in running.values()}
        for move in order:
            if state[move.ct] in MOVE_FINAL or move.ct in busy:
                continue
            in_flight = state[move.ct] in MOVE_IN_FLIGHT
            if cancelling and not in_flight:
                state[move.ct] = self._mark(
                    move, MoveState.CANCELLED, "cancelled by operator before it started")
                continue
            blocked = [d for d in move.after if state.get(d) in MOVE_FINAL
                       and state[d] != MoveState.SUCCEEDED]
            if blocked:
                state[move.ct] = self._mark(move, MoveState.SKIPPED,
                                            f"skipped: move of {blocked[0]} it waits for did not succeed")
                continue
            if not in_flight and any(state.get(d) != MoveState.SUCCEEDED for d in move.after if d in state):
                continue
            if not in_flight and self.may_start is not None and not self.may_start(move):
                continue
            if not in_flight and (len(running) >= self.policy.max_parallel * ADMISSION_DEPTH
                                  or out[move.source] >= self.policy.max_outgoing_per_node * ADMISSION_DEPTH
                                  or into[move.target] >= self.policy.max_incoming_per_node * ADMISSION_DEPTH):
                continue
            saga = MoveSaga(self.sessions, self.backend, self.settings, job_id, move.id, owner=self.owner,
                            claim=self.claim, progress=self.progress, slots=self.slots, policy=self.policy,
                            cancelled=lambda: self._job_state(job_id) == JobState.CANCELLING)
            running[pool.submit(saga.run)] = move
            busy.add(move.ct)
            state[move.ct] = MoveState.RUNNING
            out[move.source] += 1
            into[move.target] += 1

    def run_cleanups(self) -> list[str]:
        """Retry every cleanup left for later (retention over, forwarders no longer needed, a
        source node back). Returns one line per move: what happened."""
        lines = []
        for job_id, move_id in pending_cleanups(self.sessions):
            saga = MoveSaga(self.sessions, self.backend, self.settings, job_id, move_id, owner=self.owner,
                            policy=self.policy)
            outcome = saga.retry_cleanup()
            lines.append(f"job {job_id} {outcome.ct}: {outcome.message}")
        return lines

    def _mark(self, move: MoveRow, state: MoveState, message: str) -> MoveState:
        """End a move that never started; returns ``state``."""
        with self.sessions.begin() as session:
            if self.claim is not None:
                renew_claim(session, self.claim)
            row = session.get(MoveRow, move.id)
            assert row is not None
            row.state, row.message = state, message
        return state

    def _final_state(self, job_id: int, *, cancelled: bool) -> JobState:
        with self.sessions() as session:
            return finished_job_state((m.state for m in job_moves(session, job_id)), cancelled=cancelled)

    def _final_message(self, job_id: int, final: JobState) -> str:
        with self.sessions() as session:
            moves = job_moves(session, job_id)
        counts = Counter(m.state for m in moves)
        text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        bad = [f"{m.ct}: {m.message}" for m in moves if m.state in MOVE_PROBLEM]
        return f"{final}: {text}" + (f"; first problem: {bad[0]}" if bad else "")

    def summary(self, job_id: int) -> JobSummary:
        with self.sessions() as session:
            job = get_job(session, job_id)
            moves = job_moves(session, job_id)
        out = JobSummary(job_id, job.state, dict(Counter(m.state for m in moves)))
        out.predicted_makespan_s = float((job.plan or {}).get("score", {}).get("predicted_makespan_s", 0.0))
        starts = [m.started_at for m in moves if m.started_at is not None]
        ends = [m.finished_at for m in moves if m.finished_at is not None]
        for m in moves:
            out.predicted_duration_s += float(m.predicted.get("duration_s", 0.0))
            out.predicted_downtime_s += float(m.predicted.get("downtime_s", 0.0))
            if m.state == MoveState.SUCCEEDED:
                out.bytes += int(m.figures.get("bytes", 0))
                out.observed_duration_s += float(m.figures.get("duration_s", 0.0))
                out.observed_downtime_s += float(m.figures.get("downtime_s", 0.0))
                out.rpo_s = max(out.rpo_s, float(m.predicted.get("data_age_s", 0.0)))
            if m.state in (*MOVE_PROBLEM, MoveState.SKIPPED):
                out.messages.append(f"{m.ct}: {m.message}")
        if starts and ends:
            out.makespan_s = max(ends) - min(starts)
        return out
