"""The whole chain on the API double: discover -> plan_evacuate -> the service's Engine runs the
plan through the proxmox backend (parallel moves, journal in the job store)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from adapters.proxmox import create_backend
from fleet.policy import Policy
from planners import plan_evacuate
from service.config import EngineSection
from service.engine import Engine
from service.jobs import create_job
from service.store import JournalRow, open_database
from tests.doubles.pvedouble.fixtures import make_double, settings_for  # noqa: F401 - fixture
from tests.integration.proxmox.test_proxmox_evacuate import evacuation_fleet


def test_engine_evacuates_a_node_of_the_double(make_double, monkeypatch, tmp_path) -> None:  # noqa: F811
    double = make_double(evacuation_fleet())
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", double.token_secret)
    double.world.faults.task_failures[("vzmigrate", 206)] = "migration aborted"
    backend = create_backend(settings_for(double))
    policy = Policy(max_parallel=4, max_outgoing_per_node=4, max_incoming_per_node=2)
    plan = plan_evacuate(backend.discover(), ["pve1"], policy)
    if plan.unplaced:
        pytest.fail(f"planner left containers unplaced: {plan.unplaced}")
    before_job = len(double.world.requests)  # the planning discover is not part of the job
    sessions = open_database(f"sqlite:///{tmp_path / 'ferry.db'}")
    job_id = create_job(sessions, plan, approved=True)
    engine = Engine(sessions, backend, policy, EngineSection(retry_initial_s=0.01, retry_max_s=0.05, lease_s=30))
    summary = engine.run_job(job_id)
    assert summary.state == "succeeded", summary.messages
    final = double.world.snapshot()
    planned = {m.ct: m.to for m in plan.moves}
    for ct in final.containers:
        if ct.id in planned:
            assert ct.node == planned[ct.id]
    assert not [c for c in final.containers if c.node == "pve1" and c.status == "running"]
    with sessions() as session:
        rows = session.scalars(select(JournalRow).where(JournalRow.job_id == job_id, JournalRow.kind == "api")).all()
    # Moves run in parallel, so compare as multisets: every call the double served is journaled.
    assert sorted((r.what, r.status) for r in rows) == sorted(
        (f"{m} {p}", s) for m, p, s in double.world.requests[before_job:])
    assert ("vzmigrate", 206) not in double.world.faults.task_failures  # the injected failure happened
    assert all(double.token_secret not in repr(r.detail) for r in rows)


def test_engine_evacuation_with_a_failing_task_a_lock_and_5xx(make_double, monkeypatch, tmp_path) -> None:  # noqa: F811
    """The done-when of the Proxmox adapter, through the service: 30 containers (HA and not, local
    and shared storage), a failing migration task, a container locked by a backup, and HTTP 503s
    in the middle; `ferry job show ID --format json` (job_detail) journals every API call."""
    import time

    from service.jobs import job_detail

    double = make_double(evacuation_fleet())
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", double.token_secret)
    world = double.world
    world.faults.task_failures[("vzmigrate", 205)] = "migration aborted"
    world.guests[210].lock, world.guests[210].lock_until = "backup", time.monotonic() + 0.3
    backend = create_backend(settings_for(double))
    policy = Policy(max_parallel=4, max_outgoing_per_node=4, max_incoming_per_node=2)
    inventory = backend.discover()
    plan = plan_evacuate(inventory, ["pve1"], policy)
    assert len(inventory.on_node("pve1")) >= 30 and not plan.unplaced
    before_job = len(world.requests)
    sessions = open_database(f"sqlite:///{tmp_path / 'ferry.db'}")
    job_id = create_job(sessions, plan, approved=True)
    fired = []

    def progress(ct: str, step: str, done: int, total: int) -> None:
        if step == "done" and not fired:  # the first move is over: 503 on the next three requests
            fired.append(ct)
            world.faults.http_errors = 3

    engine = Engine(sessions, backend, policy, EngineSection(retry_initial_s=0.01, retry_max_s=0.05, lease_s=30),
                    progress=progress)
    summary = engine.run_job(job_id)
    assert summary.state == "succeeded", summary.messages
    assert fired and world.faults.http_errors == 0 and ("vzmigrate", 205) not in world.faults.task_failures
    final = {c.id: c for c in world.snapshot().containers}
    assert sorted(final) == sorted(c.id for c in inventory.containers)  # every container exactly once
    assert all(final[m.ct].node == m.to for m in plan.moves)
    detail = job_detail(sessions, job_id)
    api = [j for j in detail["journal"] if j["kind"] == "api"]
    served = world.requests[before_job:]
    assert sorted((j["what"], j["status"]) for j in api) == sorted((f"{m} {p}", s) for m, p, s in served)
    assert sum(1 for j in api if j["status"] == 503) == 3
    assert all(double.token_secret not in repr(j) for j in detail["journal"])
    started = [j for j in api if j["what"].startswith("POST") and "upid" in {k.lower() for k in j["detail"]}]
    assert started and all(str(j["detail"].get("upid", j["detail"].get("UPID", ""))).startswith("UPID:")
                           for j in started)
