"""The loop ``ferry serve`` runs beside the REST API: take approved jobs from the store and run them.

    APScheduler (BackgroundScheduler)
      |-- every schedule.poll_s --> poll --> ready_jobs (store: approved / running / cancelling, by priority,
      |                                                  not run by one instance alone, window open
      |                                                  if it needs one)
      |                                       --> one thread per job not in hand: Engine.run_job
      |                                           (shared: claims the job's ready moves), held
      |-- every max(60 s, poll_s) --> run_cleanups --> Engine.run_cleanups (deferred cleanups)
      |-- every schedule.poll_s --> campaign_drive.on_poll (leader: saved campaigns, notifications)
      `-- schedule.rebalance_cron --> rebalance_now --> operations.plan_rebalancing --> create_job(approved)

The first poll runs at start, so jobs a dead ferry left unfinished are resumed at once (the rule of
``ferry jobs resume``: nobody holds a live lease on them). Everything the loop decides it reads from
the store, so several instances can poll one database and run the same jobs at once: each move is
claimed by one instance (service.move_claims), the transfer slots and bandwidth budgets are shared
by all of them (service.slots), and the moves of an instance that dies are taken over when their
leases run out. A job that ``ferry job resume`` runs alone (its job lease) is left to it.

Stopping (SIGTERM / SIGINT through ``request_stop``) and closed maintenance windows both work the way
a pause does: the engine starts no new move, lets the moves in flight finish, and returns. The
worker then frees the job's lease, so the next poll (here, or on another instance) continues it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Collection

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from adapters.base import BackendError
from fleet.errors import InputError
from fleet.plan import Plan
from service.engine import Engine, JobSummary, instance_name
from service.jobs import JobConflict, create_job, get_job, lease_holder
from service.leader import Leadership
from service.lifecycle import JOB_ADVANCING, JOB_RUNNABLE, MOVE_UNFINISHED, JobEvent, JobState, job_transition
from service.operations.planning import plan_rebalancing
from service.operations.requests import RebalanceRequest
from service.preemption import priority_of
from service.runtime import Runtime
from service.schedule import MaintenanceWindows, cron_trigger, time_zone
from service.store import JobRow, MoveRow, utcnow

log = logging.getLogger("ferry.worker")

Clock = Callable[[], dt.datetime]
#: Top-level key of a stored plan: when true, the job starts moves only inside a maintenance window.
WINDOW_KEY = "window"


def wall_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def instance_owner(runtime: Runtime) -> str:
    """This process's name in job leases: the same one Runtime.engine() gives its engines."""
    return runtime.config.ferry.instance or instance_name()


def with_window(plan: Plan) -> Plan:
    """The plan, marked so that its job starts moves only inside maintenance windows. The mark
    travels in the stored plan (plan.md allows extra keys), so every instance sees it."""
    return Plan.model_validate({**plan.to_dict(), WINDOW_KEY: True})


#: Predicted durations are stretched by this much before they are fitted into a window.
WINDOW_MARGIN = 1.25


def uses_window(job: JobRow) -> bool:
    return bool((job.plan or {}).get(WINDOW_KEY))


class Worker:
    """Polls the store and runs approved jobs, one at a time; optionally plans a nightly rebalance."""

    def __init__(self, runtime: Runtime, *, clock: Clock = wall_clock,
                 windows: MaintenanceWindows | None = None) -> None:
        schedule = runtime.config.schedule
        self.runtime = runtime
        self.clock = clock
        self.windows = windows or MaintenanceWindows.from_config(schedule.windows, schedule.timezone)
        self.owner = instance_owner(runtime)
        self._stopping = threading.Event()
        self.leadership = Leadership(runtime.sessions.kw["bind"])
        self._scheduler: BackgroundScheduler | None = None
        #: The jobs this instance works on now, each in its own thread.
        self._in_hand: dict[int, threading.Thread] = {}
        self._hand_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start polling now (resuming unfinished jobs first) and arm the nightly rebalance."""
        schedule = self.runtime.config.schedule
        scheduler = BackgroundScheduler(
            timezone=time_zone(schedule.timezone), executors={"default": ThreadPoolExecutor(2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
        scheduler.add_job(self.poll, "interval", seconds=schedule.poll_s, id="poll",
                          next_run_time=dt.datetime.now(dt.UTC))
        scheduler.add_job(self.run_cleanups, "interval", seconds=max(60.0, schedule.poll_s), id="cleanup")
        from service.campaign_drive import on_poll  # saved campaigns and notifications move on too

        scheduler.add_job(on_poll, "interval", args=[self], seconds=schedule.poll_s, id="campaigns")
        if schedule.rebalance_cron:
            scheduler.add_job(self.rebalance_now, cron_trigger(schedule.rebalance_cron, schedule.timezone),
                              id="rebalance")
        scheduler.start()
        self._scheduler = scheduler

    def request_stop(self) -> None:
        """Take no new job and start no new move; safe to call from a signal handler."""
        self._stopping.set()

    def stop(self) -> None:
        """Stop and wait until the job in hand has let its moves in flight finish."""
        self.request_stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        for thread in self._threads():
            thread.join()
        self.leadership.release()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- the poll ----------------------------------------------------------------------------
    def run_cleanups(self) -> list[str]:
        """Retry cleanups left for later (retention ended, forwarders no longer needed)."""
        if self.stopping:
            return []
        lines = self.engine(lambda _job_id: False).run_cleanups()
        for line in lines:
            log.info("cleanup: %s", line)
        return lines

    def poll(self, exclude: Collection[int] = ()) -> list[int]:
        """Start working on every job that is ready now and not in hand yet (one thread each);
        the jobs started."""
        started = []
        with self._hand_lock:
            for job_id in self.ready_jobs(exclude={*self._in_hand, *exclude}):
                if self.stopping:
                    break
                thread = threading.Thread(target=self._work, args=(job_id,), name=f"job-{job_id}", daemon=True)
                self._in_hand[job_id] = thread
                thread.start()
                started.append(job_id)
        return started

    def _work(self, job_id: int) -> None:
        try:
            self.run_one(job_id)
        except Exception:  # a thread's end: say why, the next poll takes the job up again
            log.exception("job %s: stopped by an unexpected error", job_id)
        finally:
            with self._hand_lock:
                self._in_hand.pop(job_id, None)

    def _threads(self) -> list[threading.Thread]:
        with self._hand_lock:
            return list(self._in_hand.values())

    def run_pending(self) -> list[int]:
        """Work on every job that is ready now, all at once, until each ended or was held; each at
        most once per call (the ids, oldest first)."""
        done: list[int] = []
        while not self.stopping:
            started = self.poll(exclude=done)
            if not started:
                break
            for thread in self._threads():
                thread.join()
            done.extend(started)
        return sorted(done)

    def ready_jobs(self, exclude: Collection[int] = ()) -> list[int]:
        """Jobs to work on now, by priority (on-call's evacuation, then a maintenance drain, then a
        rebalance: service.preemption.PRIORITY), oldest first within one priority: runnable, not
        run by another instance alone, and in their window if they need one. The first is started
        first, so its moves claim the shared transfer slots before the others'."""
        now = self.clock()
        ready = []
        with self.runtime.sessions() as session:
            query = select(JobRow).where(JobRow.state.in_(JOB_RUNNABLE)).order_by(JobRow.id)
            for job in session.scalars(query):
                if job.id in exclude or lease_holder(job) not in (None, self.owner):
                    continue
                if job.state != JobState.CANCELLING and uses_window(job) and not self.windows.is_open(now):
                    continue  # a rollback after cancel is not a new move: it may run any time
                ready.append((-priority_of(job.kind), job.id))
        return [job_id for _, job_id in sorted(ready)]

    def next_job(self, exclude: Collection[int] = ()) -> int | None:
        ready = self.ready_jobs(exclude)
        return ready[0] if ready else None

    def _holds(self, windowed: bool) -> Callable[[int], bool]:
        return lambda _job_id: self.stopping or (windowed and not self.windows.is_open(self.clock()))

    def engine(self, hold: Callable[[int], bool], windowed: bool = False) -> Engine:
        rt = self.runtime
        return Engine(rt.sessions, rt.backend, rt.policy(), rt.config.engine, owner=self.owner, hold=hold,
                      may_start=self._fits_window if windowed else None, shared=True)

    def _fits_window(self, move: MoveRow) -> bool:
        """Never start a move that cannot finish before the window closes (predicted duration,
        with a margin for the prediction's error)."""
        duration = float((move.predicted or {}).get("duration_s", 0.0)) * WINDOW_MARGIN
        return self.windows.fits(self.clock(), duration)

    def run_one(self, job_id: int) -> JobSummary | None:
        """Run one job until it ends or is held; then free its lease if it did not end."""
        with self.runtime.sessions() as session:
            windowed = uses_window(get_job(session, job_id))
        try:
            summary = self.engine(self._holds(windowed), windowed).run_job(job_id)
            if summary.state in JOB_ADVANCING and not _moves_left(summary):
                summary = self.engine(lambda _job_id: False).run_job(job_id)  # only records the end
        except JobConflict as exc:  # another instance claimed it between our look and our claim
            log.info("job %s: %s", job_id, exc.line())
            return None
        except (InputError, BackendError) as exc:
            log.error("job %s could not run: %s", job_id, exc)
            return None
        if summary.state in JOB_ADVANCING:
            self._release(job_id, windowed)
        log.info("job %s: %s %s", job_id, summary.state, summary.counts)
        return summary

    def _release(self, job_id: int, windowed: bool) -> None:
        """Free the lease of a held job so that the next poll (any instance) takes it up again."""
        with self.runtime.sessions.begin() as session:
            job = get_job(session, job_id)
            if job.owner not in (None, self.owner) or job.state not in JOB_ADVANCING:
                return
            job.owner, job.lease_until = None, None
            if self.stopping:
                job.message = f"left by {self.owner} at shutdown; the next ferry continues it"
            elif windowed:
                wait_min = self.windows.minutes_until_open(self.clock())
                job.state = job_transition(JobEvent.HAND_BACK, job.state)
                job.message = f"waiting for a maintenance window (opens in {wait_min:.0f} min)"
            job.updated_at = utcnow()

    # -- nightly rebalance -------------------------------------------------------------------
    def rebalance_now(self) -> int | None:
        """Plan a rebalance with the configured policy; store it as an approved job if it moves
        anything (honouring the windows when some are configured)."""
        if self.stopping:
            return None
        if not self.leadership.try_lead():
            log.info("nightly rebalance: another instance leads; it plans the rebalance")
            return None
        rt = self.runtime
        try:
            plan = plan_rebalancing(rt, RebalanceRequest()).plan  # against the fleet as it will be
            if not plan.moves:
                log.info("nightly rebalance: nothing worth moving")
                return None
            job_id = create_job(rt.sessions, with_window(plan) if self.windows.windows else plan, approved=True)
        except (InputError, BackendError) as exc:
            log.error("nightly rebalance not started: %s", exc)
            return None
        log.info("nightly rebalance: job %s with %d moves", job_id, len(plan.moves))
        return job_id


def _moves_left(summary: JobSummary) -> bool:
    return any(summary.counts.get(state) for state in MOVE_UNFINISHED)


def serve_until_stopped(rt: Runtime, host: str, port: int) -> None:
    """``ferry serve``: the API on ``host:port`` and this worker, until SIGTERM / SIGINT; then no
    new move starts, moves in flight finish, and it returns."""
    import signal

    import uvicorn

    from service.api import create_app

    api = create_app(rt)
    worker = Worker(rt)
    # uvicorn re-raises the signal that stopped it once it has shut down (uvicorn/server.py,
    # capture_signals): this handler receives it, so the worker can finish before the exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.request_stop())
    # log_config=None: uvicorn's loggers keep the handler service.logs.configure_logging installed.
    server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level="info", log_config=None))
    worker.start()
    try:
        server.run()
    finally:
        worker.stop()
    log.info("ferry serve: stopped")
