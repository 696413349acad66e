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
from tests.pvedouble.drive import settings_for
from tests.pvedouble.fixtures import make_double  # noqa: F401 - fixture
from tests.test_proxmox_evacuate import evacuation_fleet


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
