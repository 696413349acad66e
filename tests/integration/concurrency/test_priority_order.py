"""The worker takes ready jobs by priority (evacuate > drain > rebalance), oldest first within one
priority, not in the order they were created."""

from __future__ import annotations

from pathlib import Path

from fleet.plan import Goal, Move, Plan
from service.jobs import create_job
from service.runtime import Runtime
from service.worker import Worker
from tests.conftest import sim_config


def one_move(kind: str, node: str) -> Plan:
    goal = Goal(kind=kind, nodes=[] if kind == "rebalance" else [node])
    return Plan(goal=goal, inventory_digest="sha256:order",
                moves=[Move(ct=f"{node}-ct", to=f"{node}-to", method="restart", **{"from": node})])


def test_ready_jobs_come_by_priority_then_age(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path))
    created = [(kind, create_job(rt.sessions, one_move(kind, f"n{i}"), approved=True)) for i, kind in
               enumerate(["rebalance", "drain", "evacuate", "rebalance", "evacuate", "drain"])]
    ids = {kind: [job_id for k, job_id in created if k == kind] for kind in ("evacuate", "drain", "rebalance")}
    worker = Worker(rt)
    expected = [*ids["evacuate"], *ids["drain"], *ids["rebalance"]]
    assert worker.ready_jobs() == expected
    assert worker.next_job() == ids["evacuate"][0]
    assert worker.next_job(exclude=ids["evacuate"]) == ids["drain"][0]  # the older drain first
    assert expected != sorted(expected)  # creation order alone would give another answer
