"""The serve loop: windows and cron parsed and validated, window gating with an injected clock,
resumption of jobs whose owner died, a clean stop, and the nightly rebalance."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from adapters.sim.audit import audit_world
from fleet.errors import InputError
from fleet.plan import Plan
from planners import plan_rebalance
from service.config import ScheduleSection, load_config
from service.jobs import create_job, job_detail
from service.runtime import Runtime
from service.schedule import MaintenanceWindows, cron_trigger, parse_window
from service.worker import Worker, with_window
from tests.conftest import sim_config
from tests.integration.sim.test_api import EMPTY_A, hand_plan, wait_for
from tests.integration.sim.test_cli import FERRY, ferry, write_config
from tests.integration.sim.test_sim_engine import world_file

UTC = dt.UTC
SATURDAY_2AM = dt.datetime(2026, 11, 21, 2, 0, tzinfo=UTC)  # 2026-11-21 is a Saturday
SATURDAY_6AM = dt.datetime(2026, 11, 21, 6, 0, tzinfo=UTC)


class FakeClock:
    """A settable 'now' for the worker: tests move time instead of waiting for it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def plan_for(moves: list[tuple[str, str, str, int]] = EMPTY_A) -> Plan:
    return Plan.model_validate(hand_plan(moves))


def states(rt: Runtime, job_id: int) -> dict[str, str]:
    return {m["ct"]: m["state"] for m in job_detail(rt.sessions, job_id)["moves"]}


def slow_runtime(tmp: Path, speedup: float = 400.0, **schedule: object) -> Runtime:
    config = sim_config(tmp, speedup=speedup)  # at 400: ~0.1-0.2 s of wall time per move
    return Runtime(config.model_copy(update={"schedule": ScheduleSection(**schedule)}))


# -- windows and cron --------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "open_at", "closed_at"), [
    ("Sat 01:00-05:00", [(5, 1, 0), (5, 4, 59)], [(5, 0, 59), (5, 5, 0), (4, 2, 0)]),
    ("Fri 22:00-02:00", [(4, 22, 0), (5, 1, 59)], [(4, 21, 59), (5, 2, 0), (3, 23, 0)]),
    ("Mon-Fri 12:00-13:00", [(0, 12, 30), (4, 12, 0)], [(5, 12, 30), (6, 12, 30)]),
    ("Sun-Mon 23:00-24:00", [(6, 23, 30), (0, 23, 59)], [(1, 23, 30), (0, 0, 0)]),
    ("sat,SUNDAY 00:00-24:00", [(5, 0, 0), (6, 23, 59)], [(0, 0, 0), (4, 23, 59)]),
    ("daily 03:00-04:00", [(d, 3, 15) for d in range(7)], [(d, 4, 0) for d in range(7)]),
])
def test_windows_open_and_close_when_they_say(text: str, open_at: list, closed_at: list) -> None:
    windows = MaintenanceWindows([parse_window(text)])
    monday = dt.datetime(2026, 11, 16, tzinfo=UTC)
    at = [monday + dt.timedelta(days=d, hours=h, minutes=m) for d, h, m in open_at + closed_at]
    assert [windows.is_open(t) for t in at] == [True] * len(open_at) + [False] * len(closed_at)


def test_windows_follow_their_time_zone_and_say_when_they_open() -> None:
    berlin = MaintenanceWindows.from_config(["Sat 01:00-05:00"], "Europe/Berlin")
    assert berlin.is_open(dt.datetime(2026, 11, 21, 0, 30, tzinfo=UTC))  # 01:30 in Berlin (CET)
    assert not berlin.is_open(SATURDAY_2AM + dt.timedelta(hours=2))  # 05:00 in Berlin
    assert MaintenanceWindows([]).is_open(SATURDAY_6AM)  # no windows: always open
    assert MaintenanceWindows.from_config(["Sat 01:00-05:00"]).minutes_until_open(SATURDAY_6AM) == 7 * 24 * 60 - 5 * 60


@pytest.mark.parametrize(("text", "why"), [
    ("Sat 1-5", "expected 'DAYS HH:MM-HH:MM'"),
    ("Sta 01:00-05:00", "unknown day 'sta'"),
    ("Sat 25:00-26:00", "25:00 is not a time of day"),
    ("Sat 01:60-02:00", "01:60 is not a time of day"),
    ("Sat 24:00-02:00", "24:00 is not a time of day"),
    ("Sat 03:00-03:00", "the window is empty"),
    ("", "expected 'DAYS HH:MM-HH:MM'"),
])
def test_bad_windows_are_refused_naming_key_and_value(text: str, why: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_window(text)
    assert caught.value.line().startswith(f"schedule.windows={text!r}: ") and why in caught.value.line()


@pytest.mark.parametrize(("expr", "why"), [
    ("0 3 * *", "expected 5 fields"),
    ("61 3 * * *", "not a valid cron expression"),
    ("0 3 * * 0", "name the weekdays"),
    ("0 3 * * 1-5", "name the weekdays"),
])
def test_bad_cron_expressions_are_refused(expr: str, why: str) -> None:
    with pytest.raises(InputError) as caught:
        cron_trigger(expr)
    assert caught.value.line().startswith(f"schedule.rebalance_cron={expr!r}: ") and why in caught.value.line()
    assert cron_trigger("0 3 * * mon-fri") is not None and cron_trigger("*/15 * * * *") is not None


def test_bad_schedule_config_fails_at_load_and_the_cli_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "ferry.toml"
    config.write_text('[schedule]\nwindows = ["Sat 01:00-05:00", "Sun 9-10"]\n')
    with pytest.raises(InputError, match=r"schedule.windows\[1\]='Sun 9-10': expected"):
        load_config(config)
    config.write_text('[schedule]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(InputError, match="schedule.timezone='Mars/Olympus': unknown time zone"):
        load_config(config)
    config.write_text('[schedule]\nrebalance_cron = "0 3 * * 0"\n[api]\ntoken = "x"\n')
    with pytest.raises(InputError, match="api.token"):  # extra keys stay forbidden
        load_config(config)
    config.write_text('[schedule]\nrebalance_cron = "0 25 * * *"\n')
    result = ferry("jobs", config=config, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "schedule.rebalance_cron='0 25 * * *': not a valid cron expression" in result.stderr


# -- window gating -----------------------------------------------------------------------------
def test_a_window_job_waits_for_its_window_and_others_do_not(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path).model_copy(
        update={"schedule": ScheduleSection(windows=["Sat 01:00-05:00"])}))
    clock = FakeClock(SATURDAY_6AM)
    worker = Worker(rt, clock=clock)
    windowed = create_job(rt.sessions, with_window(plan_for(EMPTY_A[2:3])), approved=True)
    anytime = create_job(rt.sessions, plan_for(EMPTY_A[4:5]), approved=True)
    assert worker.run_pending() == [anytime]
    assert job_detail(rt.sessions, windowed)["state"] == "approved"
    assert job_detail(rt.sessions, anytime)["state"] == "succeeded"
    clock.now = SATURDAY_2AM
    assert worker.run_pending() == [windowed]
    assert job_detail(rt.sessions, windowed)["state"] == "succeeded"


def test_a_closing_window_lets_moves_in_flight_finish_and_starts_no_new_one(tmp_path: Path) -> None:
    rt = slow_runtime(tmp_path, windows=["Sat 01:00-05:00"])
    clock = FakeClock(SATURDAY_2AM)
    worker = Worker(rt, clock=clock)
    chain = [(ct, to, method, 0) for ct, to, method, _ in EMPTY_A[2:5]]
    plan = plan_for(chain)
    for i, move in enumerate(plan.moves[1:]):  # one after the other
        move.after = [plan.moves[i].ct]
    job_id = create_job(rt.sessions, with_window(plan), approved=True)
    thread = threading.Thread(target=worker.run_one, args=(job_id,))
    thread.start()
    wait_for(lambda: "running" in states(rt, job_id).values())
    clock.now = SATURDAY_6AM
    thread.join(timeout=30)
    assert not thread.is_alive()
    held = job_detail(rt.sessions, job_id)
    assert held["state"] == "approved" and "waiting for a maintenance window" in held["message"]
    assert "running" not in states(rt, job_id).values() and "pending" in states(rt, job_id).values()
    assert audit_world(world_file(rt)) == []
    assert worker.next_job() is None  # still closed
    clock.now = SATURDAY_2AM + dt.timedelta(days=7)
    assert worker.run_pending() == [job_id]
    assert set(states(rt, job_id).values()) == {"succeeded"}


# -- resumption and stopping -------------------------------------------------------------------
def test_the_worker_resumes_a_job_whose_owner_was_killed(tmp_path: Path) -> None:
    config = write_config(tmp_path, speedup=400.0)
    rt = Runtime(load_config(config))
    job_id = create_job(rt.sessions, plan_for(), approved=True)
    proc = subprocess.Popen([FERRY, "--config", str(config), "jobs", "resume"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: "succeeded" in states(rt, job_id).values() and "running" in states(rt, job_id).values())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    left = job_detail(rt.sessions, job_id)
    assert left["state"] == "running" and "running" in states(rt, job_id).values()
    other = Worker(Runtime(load_config(config).model_copy(deep=True)))
    assert other.next_job() == job_id  # the dead owner's lease does not count
    assert other.run_pending() == [job_id]
    assert set(states(rt, job_id).values()) == {"succeeded"}
    assert audit_world(world_file(rt), forbidden_nodes=frozenset({"a"})) == []


def test_a_job_a_live_instance_holds_is_left_alone(sim_runtime: Runtime) -> None:
    from service.jobs import claim_job

    job_id = create_job(sim_runtime.sessions, plan_for(EMPTY_A[2:3]), approved=True)
    claim_job(sim_runtime.sessions, job_id, "another-host:4242", lease_s=60)
    assert Worker(sim_runtime).run_pending() == []
    assert job_detail(sim_runtime.sessions, job_id)["state"] == "approved"


def test_stopping_lets_moves_in_flight_finish_and_leaves_the_job_to_the_next_ferry(tmp_path: Path) -> None:
    # Moves of ~2 s in three waves: the first "running" seen, even late on a busy machine (reads wait
    # for the engine's writes), leaves moves not started yet.
    rt = slow_runtime(tmp_path, speedup=25.0, poll_s=0.05)
    job_id = create_job(rt.sessions, plan_for(), approved=True)
    worker = Worker(rt)
    worker.start()
    wait_for(lambda: "running" in states(rt, job_id).values())
    worker.stop()  # returns once the moves in flight ended: none runs, the rest were never started
    left = job_detail(rt.sessions, job_id)
    assert "running" not in states(rt, job_id).values() and "pending" in states(rt, job_id).values()
    assert left["state"] == "running" and "left by" in left["message"]
    assert audit_world(world_file(rt)) == []
    assert Worker(rt).run_pending() == [job_id]  # free lease: taken up at once
    assert set(states(rt, job_id).values()) == {"succeeded"}


# -- nightly rebalance -------------------------------------------------------------------------
def test_the_nightly_rebalance_creates_a_job_only_when_it_would_move_something(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path).model_copy(update={"policy": sim_config(tmp_path).policy.model_copy(
        update={"aggressiveness": 5})}))
    expected = plan_rebalance(rt.backend.discover(), rt.policy(), last_moved={}, now=None)
    assert expected.moves, "the small fleet is uneven enough for aggressiveness 5"
    worker = Worker(rt)
    job_id = worker.rebalance_now()
    assert job_id is not None
    detail = job_detail(rt.sessions, job_id)
    assert detail["kind"] == "rebalance" and detail["state"] == "approved"
    assert [(m["ct"], m["to"]) for m in detail["moves"]] == [(m.ct, m.to) for m in expected.moves]
    assert worker.run_pending() == [job_id]
    # Just moved: the cooldown keeps them put, and a balanced fleet makes no job.
    assert worker.rebalance_now() is None


def test_the_cron_arms_the_nightly_rebalance_in_the_scheduler(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path).model_copy(
        update={"schedule": ScheduleSection(rebalance_cron="30 3 * * sat", poll_s=60)}))
    worker = Worker(rt)
    worker.start()
    try:
        job = worker._scheduler.get_job("rebalance")  # type: ignore[union-attr]
        fire = job.next_run_time.astimezone(dt.UTC)
        assert (fire.weekday(), fire.hour, fire.minute) == (5, 3, 30)
        assert 0 < (fire - dt.datetime.now(dt.UTC)).total_seconds() <= 7 * 86400
    finally:
        worker.stop()
