"""The migration engine: runs a job's moves through a backend, within limits, resumably.

    job (store) --a pre-empted job re-plans what it has left (service.replanning), on start and
        as soon as a claim round sees moves of it yielded
        --claim ready moves (service.move_claims)--> this engine's admission limits
        --> thread pool --> MoveSaga per move --> transfer slots (fleet-wide, service.slots)
        --> outcomes --> decide_job (whoever ends the last move ends the job)

Moves, not jobs, are the unit of work: several engines (``ferry serve`` instances on one
PostgreSQL) run the moves of one job, each move claimed by one of them with a lease and a fencing
token. A move is ready when every move named in its ``after`` has succeeded; if one of those
failed, it is skipped with the reason. Moves a dead or frozen instance left in flight are claimed
first once their lease runs out, and resumed through the saga's observe-then-act path. Engines
sharing a job share its ready moves fairly: each announces itself (service.participants) and takes
only its share, leaving the rest to the others for a short grace period; a move that ends wakes
the other instances' claimants at once (service.wakeups: PostgreSQL LISTEN/NOTIFY). The engine
heartbeats its moves' leases and reads pause / cancel requests from the store, so that they work
from any process. Run alone (the CLI), an engine also claims the job, and every write checks that
claim's fencing token too: an engine whose claim was taken over raises LeaseLost and starts
nothing more.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from adapters.base import Backend, BackendError
from adapters.clock import WALL_CLOCK, Clock
from fleet.errors import InputError
from fleet.policy import Policy
from service.config import EngineSection
from service.jobs import Claim, claim_job, get_job, pending_cleanups, renew_claim, set_job_state
from service.lifecycle import JOB_ADVANCING, JOB_FINAL, MOVE_PROBLEM, Cause, JobState, MoveOutcome, MoveState
from service.move_claims import MoveClaim, MoveLost, claim_ready_moves, decide_job, join_job, renew_moves
from service.participants import announce, withdraw
from service.replacement import replace_move
from service.replanning import replan_remaining
from service.saga import MoveSaga, Progress
from service.slots import ADMISSION_DEPTH, FleetSlots
from service.store import MoveRow, job_moves
from service.wakeups import Wakeups

log = logging.getLogger("ferry.engine")

_TICK_S = 0.1
#: How often the engine re-reads the job's control state (pause / cancel) from the store.
_CONTROL_EVERY_S = 0.5
#: How long an engine that found nothing to claim waits before it looks again (unless one of its
#: own moves ends first, or a wake-up comes): other instances' leases run out meanwhile.
_IDLE_LOOK_S = 0.3
#: How long ready moves beyond this engine's fair share are left to the other live instances
#: before it takes them itself (one of those may be frozen or busy elsewhere).
_SHARE_GRACE_S = 1.0


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
                 may_start: Callable[[MoveRow], bool] | None = None, shared: bool = False) -> None:
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
        #: Run the job beside other instances (claiming moves only), rather than alone.
        self.shared = shared
        self._control: tuple[str, float] = (JobState.RUNNING, 0.0)
        self.claim: Claim | None = None
        #: Since when this engine has left ready moves beyond its share to the other instances.
        self._leaving_since: float | None = None
        #: How many moves this engine claimed (its share of the jobs it took part in).
        self.claimed = 0
        #: Moves of the job yielded to higher jobs, as of the last claim round.
        self._yielded_seen = 0
        #: Waits and admission looks go through it (bench/engine.py runs on a virtual clock).
        self.clock: Clock = WALL_CLOCK

    def _job_state(self, job_id: int) -> str:
        """The job's control state, re-read (and the job claim renewed) every _CONTROL_EVERY_S;
        LeaseLost once the job claim is no longer ours."""
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
        """Run (or resume) a job until every move is final, or the job is paused or held.

        Alone (the default: ``ferry evacuate``, ``ferry jobs resume``) the engine first claims the
        job, so no other engine joins it; ``shared`` (``ferry serve``), it takes part beside the
        other instances, each claiming the job's ready moves one by one."""
        if self.shared:
            job = join_job(self.sessions, job_id, self.owner)
        else:
            job = claim_job(self.sessions, job_id, self.owner, self.settings.lease_s)
            self.claim = Claim(job_id, self.owner, job.claim_token, self.settings.lease_s)
        if job.state == JobState.PENDING:
            raise InputError("job", job_id, "is pending: approve it with 'ferry job resume ID'")
        if job.state in JOB_FINAL:
            return self.summary(job_id)
        if not self.shared and job.state != JobState.CANCELLING:
            set_job_state(self.sessions, job_id, JobState.RUNNING, claim=self.claim)
        self._replan(job_id)
        self._control = (JobState.RUNNING, 0.0)
        world_start = self.backend.now()
        self.wakeups = Wakeups(self.sessions.kw["bind"], clock=self.clock)
        self.slots = FleetSlots(self.sessions, self.policy, self.wakeups)
        workers = self.policy.max_parallel * ADMISSION_DEPTH
        try:
            self._announce(job_id)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="move") as pool:
                self._schedule(job_id, pool)
        finally:
            if self.shared:
                withdraw(self.sessions, job_id, self.owner)
            self.wakeups.close()
        decide_job(self.sessions, job_id, claim=self.claim)
        summary = self.summary(job_id)
        summary.makespan_s = max(summary.makespan_s, self.backend.now() - world_start)
        return summary

    def _schedule(self, job_id: int, pool: ThreadPoolExecutor) -> None:
        """Claim ready moves and run them until none is left to this engine: every move is final,
        or the job is paused / held and nothing of this engine's is in flight. Moves other
        instances hold are waited for (their leases bound the wait), then taken over if they die.
        An ended move (here, or on another instance: a wake-up) makes the engine look at once."""
        running: dict[Future[MoveOutcome], tuple[MoveRow, MoveClaim]] = {}
        beat, look_at = time.monotonic(), self.clock.monotonic()
        held_elsewhere, seen = False, self.wakeups.generation
        while True:
            control = self._job_state(job_id)
            if control != JobState.PAUSED and (self.clock.monotonic() >= look_at or self.wakeups.generation != seen):
                claimed, seen = len(running), self.wakeups.generation
                held_elsewhere = self._start_ready(job_id, running, pool)
                if len(running) == claimed:  # nothing to take: look again a little later
                    look_at = self.clock.monotonic() + _IDLE_LOOK_S
            if not running and (control == JobState.PAUSED or not held_elsewhere):
                return
            if not running:  # waiting for other instances' moves, or a wake-up
                self.wakeups.wait(seen, _TICK_S)
            done, _ = self.clock.wait_futures(running, _TICK_S)
            for future in done:
                move, _ = running.pop(future)
                self._outcome(job_id, move, future)
            if done:
                decide_job(self.sessions, job_id, claim=self.claim)
                with self.sessions.begin() as session:  # the moves waiting for these may be ready
                    self.wakeups.notify(session, job_id)
            if time.monotonic() - beat >= _CONTROL_EVERY_S:  # the heartbeat of this engine's moves
                renew_moves(self.sessions, [claim for f, (_, claim) in running.items() if not f.done()])
                self._announce(job_id)
                beat = time.monotonic()

    def _replan(self, job_id: int) -> None:
        """Re-plan what is left if a higher job took moves of this one (service.replanning). A
        fleet that cannot be read now leaves the moves as approved (the re-plan stays owed)."""
        try:
            replanned = replan_remaining(self.sessions, self.backend, self.policy, job_id)
        except BackendError as exc:
            log.warning("job %s: re-plan after pre-emption postponed: %s", job_id, exc)
            return
        if replanned is not None:
            log.info("job %s: %s", job_id, replanned.line())

    def _announce(self, job_id: int) -> None:
        """Shared: say (again) that this instance takes part in the job, so the others leave it
        its share of the ready moves."""
        if self.shared:
            announce(self.sessions, job_id, self.owner, self.settings.lease_s)

    def _outcome(self, job_id: int, move: MoveRow, future: Future[MoveOutcome]) -> None:
        """A saga's end; one that lost its move's claim (another instance has it now) is dropped,
        one that lost the job's claim stops the engine. A move that failed for good at its
        destination goes to the next-best node (service.replacement), before the job is decided."""
        try:
            outcome = future.result()
        except MoveLost as exc:
            log.warning("%s", exc.line())
            return
        if outcome.cause is Cause.FAILURE:
            replace_move(self.sessions, self.backend, self.policy, job_id, move.id, self.claim)

    def _start_ready(self, job_id: int, running: dict[Future[MoveOutcome], tuple[MoveRow, MoveClaim]],
                     pool: ThreadPoolExecutor) -> bool:
        """Claim and start what may start now; True if other instances hold unfinished moves."""
        mine = [move for move, _ in running.values()]
        limit = self.policy.max_parallel * ADMISSION_DEPTH
        if len(running) >= limit:
            return True
        waited = self._leaving_since is not None and time.monotonic() - self._leaving_since >= _SHARE_GRACE_S
        offer = claim_ready_moves(self.sessions, job_id, self.owner, self.settings.lease_s,
                                  busy={move.id for move in mine}, admit=self._admits, room=limit - len(running),
                                  job_claim=self.claim, fair=self.shared and not waited)
        self.claimed += len(offer.claims)
        if offer.yielded > self._yielded_seen:  # a higher job took some of its moves meanwhile
            self._yielded_seen = offer.yielded
            self._replan(job_id)
        if not offer.left_to_others:
            self._leaving_since = None
        elif self._leaving_since is None or waited:
            self._leaving_since = time.monotonic()
        for move, claim in offer.claims:
            if move.state == MoveState.ROLLED_BACK:  # its engine died before deciding its re-placement
                running[pool.submit(self._decide_replacement, job_id, move)] = (move, claim)
                continue
            saga = MoveSaga(self.sessions, self.backend, self.settings, job_id, move.id, owner=self.owner,
                            claim=self.claim, progress=self.progress, slots=self.slots, policy=self.policy,
                            cancelled=lambda: self._job_state(job_id) == JobState.CANCELLING,
                            move_claim=claim)
            running[self.clock.submit(pool, saga.run)] = (move, claim)
        return offer.held_elsewhere

    def _decide_replacement(self, job_id: int, move: MoveRow) -> MoveOutcome:
        """Re-place (or not) a rolled-back move another engine left undecided (service.replacement)."""
        replaced = replace_move(self.sessions, self.backend, self.policy, job_id, move.id, self.claim)
        state = MoveState.PENDING if replaced is not None else MoveState.ROLLED_BACK
        return MoveOutcome(move.ct, state, "re-placement decided")

    def _admits(self, move: MoveRow, flying: list[MoveRow]) -> bool:
        """Whether ``move`` may start, given the moves in flight on every instance: a few more than
        the transfer slots (ADMISSION_DEPTH), in the fleet and per node, and only if it fits the
        window when there is one."""
        out = sum(1 for m in flying if m.source == move.source)
        into = sum(1 for m in flying if m.target == move.target)
        return (len(flying) < self.policy.max_parallel * ADMISSION_DEPTH
                and out < self.policy.max_outgoing_per_node * ADMISSION_DEPTH
                and into < self.policy.max_incoming_per_node * ADMISSION_DEPTH
                and (self.may_start is None or self.may_start(move)))

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
