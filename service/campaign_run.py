"""Running a rolling maintenance calendar in this process (``ferry maintenance run``).

    Calendar (service.campaigns) --for each group, in order-->
        ferry node drain N --window (one job per node) --worker polls until every job ended
        maintenance: the planned time passes (the hook: patch, reboot, done by hand meanwhile)
        ferry node restore N --window --worker polls until every job ended
    --> CampaignRun: per group the actual drain / return ends, the campaign's actual end

Time is the world's clock (``Backend.now``): wall time on a real cluster, simulated time on the sim
fleet, so a campaign over days of windows runs in seconds there and its predicted end can be
compared with the one the simulation reached. Windows gate every move exactly as under ``ferry
serve`` (service.worker: a move starts only when its predicted duration x1.25 fits).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from fleet.errors import InputError
from service.campaigns import Calendar
from service.jobs import job_detail
from service.lifecycle import JOB_FINAL, JobState, MoveState
from service.operations import nodes as node_ops
from service.runtime import Runtime
from service.schedule import MaintenanceWindows, openings
from service.store import MoveRow
from service.worker import Worker


class WorldClock:
    """The campaign's clock: ``start`` plus the backend's elapsed time (simulated seconds on the
    sim fleet), plus the idle time it skipped. Nothing happens while every job waits for a window,
    so the campaign jumps to the next opening instead of waiting for it (wall time on a real
    cluster passes either way; on the sim fleet a calendar of days runs in seconds)."""

    def __init__(self, rt: Runtime, start: dt.datetime) -> None:
        self.rt, self.start, self.base, self.skipped = rt, start, rt.backend.now(), 0.0
        #: (world seconds, total skipped from then on): to place a stored world time on this clock.
        self.skips: list[tuple[float, float]] = []

    def __call__(self) -> dt.datetime:
        return self.at(self.rt.backend.now())

    def at(self, world_s: float) -> dt.datetime:
        """The campaign's time at world time ``world_s`` (e.g. a move's stored ``started_at``)."""
        skipped = max((total for since, total in self.skips if since <= world_s), default=0.0)
        return self.start + dt.timedelta(seconds=world_s - self.base + skipped)

    def skip_to(self, moment: dt.datetime) -> None:
        self.skipped += max(0.0, (moment - self()).total_seconds())
        self.skips.append((self.rt.backend.now(), self.skipped))


def next_opening(windows: MaintenanceWindows, now: dt.datetime) -> dt.datetime:
    """When the next window opens strictly after ``now`` (the open one does not count)."""
    for opens, _closes in openings(windows, now):
        if opens > now:
            return opens
    raise InputError("schedule.windows", [], "no window opens within a year")


@dataclass
class CampaignRun:
    predicted_end: dt.datetime | None
    start: dt.datetime
    end: dt.datetime | None = None
    #: Per group: the jobs it ran and how they ended.
    steps: list[dict[str, Any]] = field(default_factory=list)
    #: Moves that started while no window was open (none, unless something is wrong).
    outside: list[str] = field(default_factory=list)
    moves: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "predicted_end": _iso(self.predicted_end),
                "end": _iso(self.end), "moves": self.moves, "outside_windows": self.outside, "steps": self.steps}


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _pending(rt: Runtime, job_ids: list[int]) -> int:
    return sum(m["state"] == MoveState.PENDING for j in job_ids for m in job_detail(rt.sessions, j)["moves"])


def _wait_for_jobs(rt: Runtime, worker: Worker, clock: WorldClock, job_ids: list[int], deadline: float,
                   poll_s: float) -> list[str]:
    """Poll the worker until every job ended (bounded by ``deadline``, a monotonic instant); when
    nothing could start, skip to the next window."""
    while True:
        states = [job_detail(rt.sessions, j)["state"] for j in job_ids]
        if all(s in JOB_FINAL for s in states):
            return states
        if time.monotonic() > deadline:
            raise InputError("campaign", job_ids, "did not finish in time; see 'ferry jobs'")
        before = _pending(rt, job_ids)
        ran = worker.run_pending()
        if not ran or _pending(rt, job_ids) == before:
            clock.skip_to(next_opening(worker.windows, clock()))
            time.sleep(poll_s)


def run_campaign(rt: Runtime, calendar: Calendar, windows: MaintenanceWindows, maintenance_s: float, *,
                 timeout_s: float = 3600.0, poll_s: float = 0.02) -> CampaignRun:
    """Drain, wait out the maintenance, and restore each group of the calendar in turn."""
    clock = WorldClock(rt, calendar.start)
    worker = Worker(rt, clock=clock, windows=windows)
    run = CampaignRun(calendar.predicted_end, clock())
    deadline = time.monotonic() + timeout_s
    for step in calendar.steps:
        drains = [node_ops.drain_node(rt, n, node_ops.NodeDrainRequest(approve=True, window=True)).job_id
                  for n in step.nodes]
        drained = _wait_for_jobs(rt, worker, clock, [j for j in drains if j is not None], deadline, poll_s)
        clock.skip_to(clock() + dt.timedelta(seconds=maintenance_s))  # the hook's time
        asked = node_ops.NodeRestoreRequest(approve=True, window=True)
        restores = [node_ops.restore_node(rt, n, asked).job_id for n in step.nodes]
        returned = _wait_for_jobs(rt, worker, clock, [j for j in restores if j is not None], deadline, poll_s)
        run.steps.append({"nodes": step.nodes, "drain_jobs": drains, "restore_jobs": restores,
                          "ok": all(s == JobState.SUCCEEDED for s in drained + returned),
                          "end": clock().isoformat()})
    run.end = clock()
    jobs = [j for step in run.steps for j in step["drain_jobs"] + step["restore_jobs"] if j is not None]
    with rt.sessions() as session:
        started = [(m.ct, m.started_at) for m in session.scalars(select(MoveRow).where(MoveRow.job_id.in_(jobs)))
                   if m.started_at is not None]
    run.moves = len(started)
    run.outside = [ct for ct, at in started if not windows.is_open(clock.at(at))]
    return run
