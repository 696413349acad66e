"""Job control and the store: pause, cancel, leases, and the same engine on PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from adapters.sim.audit import audit_world
from fleet.policy import Policy
from service.config import Config
from service.jobs import JobConflict, claim_job, create_job, job_detail, set_job_state
from service.runtime import Runtime
from tests.conftest import sim_config
from tests.integration.sim.test_sim_engine import EVACUATE_A, make_plan, world_file


def slow_runtime(tmp: Path, database: str = "") -> Runtime:
    config = sim_config(tmp, speedup=100.0)  # ~0.5 s wall per move on this fleet
    # one move at a time out of a node, so that pause and cancel find moves still pending
    config = config.model_copy(update={"policy": Policy(max_outgoing_per_node=1)})
    if database:
        config = config.model_copy(update={"ferry": config.ferry.model_copy(update={"database": database})})
    return Runtime(config)


def run_in_thread(rt: Runtime, job_id: int) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("summary", rt.engine().run_job(job_id)))
    thread.start()
    return thread, out


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def states(rt: Runtime, job_id: int) -> dict[str, str]:
    return {m["ct"]: m["state"] for m in job_detail(rt.sessions, job_id)["moves"]}


def test_pause_lets_moves_in_flight_finish_and_starts_no_new_ones(tmp_path: Path) -> None:
    rt = slow_runtime(tmp_path)
    job_id = create_job(rt.sessions, make_plan(), approved=True)
    thread, out = run_in_thread(rt, job_id)
    wait_for(lambda: "running" in states(rt, job_id).values())
    set_job_state(rt.sessions, job_id, "paused")
    thread.join(timeout=30)
    assert out["summary"].state == "paused"
    paused = states(rt, job_id)
    assert "running" not in paused.values() and "pending" in paused.values(), paused
    assert audit_world(world_file(rt)) == []
    set_job_state(rt.sessions, job_id, "approved")
    assert rt.engine().run_job(job_id).state == "succeeded"


def test_cancel_rolls_back_moves_in_flight_and_skips_the_rest(tmp_path: Path) -> None:
    rt = slow_runtime(tmp_path)
    job_id = create_job(rt.sessions, make_plan(), approved=True)
    thread, out = run_in_thread(rt, job_id)
    wait_for(lambda: "running" in states(rt, job_id).values())
    set_job_state(rt.sessions, job_id, "cancelling")
    thread.join(timeout=30)
    assert out["summary"].state == "cancelled"
    final = states(rt, job_id)
    assert set(final.values()) <= {"succeeded", "cancelled"} and "cancelled" in final.values()
    inv = rt.backend.discover()
    for ct, state in final.items():  # a cancelled move leaves the container where it was
        assert inv.container(ct).node == ("a" if state == "cancelled" else dict(
            (c, t) for c, t, _ in EVACUATE_A)[ct])
    assert audit_world(world_file(rt)) == []
    # the job's locks are released: a new plan may touch those containers
    assert create_job(rt.sessions, make_plan([("104", "c", "restart")]), approved=True) == job_id + 1


def test_a_live_lease_keeps_a_second_instance_out(tmp_path: Path) -> None:
    rt = slow_runtime(tmp_path)
    job_id = create_job(rt.sessions, make_plan(), approved=True)
    claim_job(rt.sessions, job_id, "otherhost:1234", lease_s=60)
    with pytest.raises(JobConflict, match="is being run by otherhost:1234"):
        rt.engine().run_job(job_id)
    claim_job(rt.sessions, job_id, "otherhost:1234", lease_s=-1)  # its lease ran out
    assert rt.engine().run_job(job_id).state == "succeeded"


def test_the_engine_runs_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    rt = slow_runtime(tmp_path, database=postgres_url)
    assert isinstance(rt.config, Config) and rt.config.database_url.startswith("postgresql")
    job_id = create_job(rt.sessions, make_plan(), approved=True)
    with pytest.raises(JobConflict, match=f"is being moved by job {job_id}"):
        create_job(rt.sessions, make_plan([("104", "b", "restart")], source="x"), approved=True)
    summary = rt.engine().run_job(job_id)
    assert summary.state == "succeeded", summary.messages
    assert audit_world(world_file(rt), forbidden_nodes=frozenset({"a"})) == []
    detail = job_detail(rt.sessions, job_id)
    assert len(detail["journal"]) > 20 and all(m["state"] == "succeeded" for m in detail["moves"])
    assert rt.policy().link_mb_s  # learned figures stored in PostgreSQL too


def test_one_leader_among_instances_sharing_postgresql(postgres_url: str) -> None:
    from sqlalchemy import create_engine

    from service.leader import Leadership

    first, second = (Leadership(create_engine(postgres_url)) for _ in range(2))
    assert first.shared and first.try_lead() and first.try_lead()  # holding it, asking again
    assert not second.try_lead()
    first.release()
    assert second.try_lead() and not first.try_lead()
    second._conn.invalidate()  # the leader's session dies (as with a crashed instance)...
    wait_for(first.try_lead, timeout=10)  # ...and PostgreSQL frees its lock: another one leads
    assert not second.try_lead()
    first.release()


def test_with_sqlite_the_only_instance_leads(sim_runtime: Runtime) -> None:
    from service.leader import Leadership

    leadership = Leadership(sim_runtime.sessions.kw["bind"])
    assert not leadership.shared and leadership.try_lead()


def test_a_move_that_cannot_finish_in_the_window_does_not_start(sim_runtime: Runtime) -> None:
    import datetime as dt

    from service.engine import Engine
    from service.schedule import MaintenanceWindows, parse_window

    windows = MaintenanceWindows([parse_window("Sat 01:00-02:00")])
    saturday = dt.datetime(2026, 11, 28, 1, 50, tzinfo=dt.UTC)  # ten minutes before it closes
    assert windows.seconds_left(saturday) == 600 and windows.seconds_left(saturday.replace(hour=3)) == 0
    assert windows.fits(saturday, 599) and not windows.fits(saturday, 601)
    plan = make_plan([("104", "c", "restart"), ("102", "b", "restart")])
    plan.moves[0].predicted.duration_s, plan.moves[1].predicted.duration_s = 60.0, 3600.0
    job_id = create_job(sim_runtime.sessions, plan, approved=True)
    rt = sim_runtime
    gate = lambda move: windows.fits(saturday, move.predicted["duration_s"])  # noqa: E731
    summary = Engine(rt.sessions, rt.backend, rt.policy(), rt.config.engine, may_start=gate).run_job(job_id)
    assert states(rt, job_id) == {"104": "succeeded", "102": "pending"}
    assert summary.state == "running"  # not finished, not failed: it goes on in a later window
    assert audit_world(world_file(rt)) == []
    done = Engine(rt.sessions, rt.backend, rt.policy(), rt.config.engine).run_job(job_id)
    assert done.state == "succeeded"


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = f"from service.store import open_database; open_database({url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(4)]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
