"""A drain in a maintenance window written as a Proxmox calendar event: a move starts only when its
predicted duration x1.25 fits before the window closes; the rest waits for the next window."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from service.config import ScheduleSection
from service.jobs import job_detail
from service.nodes import NodeState, stored_states
from service.operations import nodes as node_ops
from service.runtime import Runtime
from service.worker import WINDOW_MARGIN, Worker
from tests.conftest import sim_config
from tests.integration.sim.test_worker import FakeClock

SATURDAY_1AM = dt.datetime(2026, 11, 21, 1, 0, tzinfo=dt.UTC)  # 2026-11-21 is a Saturday
WINDOW_CLOSES = SATURDAY_1AM + dt.timedelta(hours=2)


def test_a_windowed_drain_starts_only_the_moves_that_fit_and_finishes_in_the_next_window(tmp_path: Path) -> None:
    config = sim_config(tmp_path)
    rt = Runtime(config.model_copy(update={"schedule": ScheduleSection(windows=["sat 01:00 for 2h"])}))
    drained = node_ops.drain_node(rt, "a", node_ops.NodeDrainRequest(approve=True, window=True))
    assert drained.job_id is not None
    predicted = {m.ct: m.predicted.duration_s * WINDOW_MARGIN for m in drained.planned.plan.moves}
    shortest, longest = min(predicted.values()), max(predicted.values())
    assert longest > shortest * 1.5  # the fleet gives moves of clearly different lengths
    left_s = (shortest + longest) / 2  # the window closes between the shortest and the longest
    clock = FakeClock(WINDOW_CLOSES - dt.timedelta(seconds=left_s))
    worker = Worker(rt, clock=clock)
    worker.run_one(drained.job_id)
    moves = {m["ct"]: m["state"] for m in job_detail(rt.sessions, drained.job_id)["moves"]}
    started = {ct for ct, state in moves.items() if state != "pending"}
    assert started and started != set(moves)
    assert all(predicted[ct] <= left_s for ct in started)
    assert min(predicted, key=predicted.__getitem__) in started
    assert max(predicted, key=predicted.__getitem__) not in started  # it would outlast the window
    held = job_detail(rt.sessions, drained.job_id)
    assert held["state"] == "approved" and "waiting for a maintenance window" in held["message"]
    assert stored_states(rt.sessions)["a"].state == NodeState.DRAINING
    clock.now = WINDOW_CLOSES  # closed: nothing starts
    assert worker.next_job() is None
    clock.now = SATURDAY_1AM + dt.timedelta(days=7)  # the next window
    assert worker.run_pending() == [drained.job_id]
    assert set(m["state"] for m in job_detail(rt.sessions, drained.job_id)["moves"]) == {"succeeded"}
    assert stored_states(rt.sessions)["a"].state == NodeState.MAINTENANCE
