"""Priorities and pre-emption (evacuate > drain > rebalance), on the sim backend and a real store.

The reported defect: a rebalance waiting for its maintenance window held its containers' locks,
so ``ferry evacuate`` was refused until someone cancelled the rebalance by hand. Now the
evacuation takes over the containers the rebalance has not started moving, without operator
action; the rebalance keeps what is left (or ends, when nothing is) and says so in its journal.
A running move is never interrupted."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleet.plan import Goal, Move, Plan
from service import operations as ops
from service.api import create_app
from service.config import load_config
from service.engine import Engine
from service.jobs import JobConflict, create_job, job_detail
from service.lifecycle import JobState, MoveState
from service.runtime import Runtime
from service.worker import Worker
from tests.integration.sim.test_api import AUTH, TOKEN, error_of, wait_for
from tests.integration.sim.test_cli import ferry, write_config

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WAIT_S = 60.0


def closed_window_config(tmp: Path) -> Path:
    """A config whose only maintenance window is three days away: windowed jobs wait."""
    path = write_config(tmp)
    day = DAYS[(dt.datetime.now(dt.UTC).weekday() + 3) % 7]
    path.write_text(path.read_text() + f'[schedule]\nwindows = ["{day} 01:00-02:00"]\npoll_s = 0.05\n')
    return path


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return Runtime(load_config(closed_window_config(tmp_path)))


def rebalance(moves: list[tuple[str, str, str]]) -> Plan:
    """A hand-made rebalance, two moves per wave (the per-node limit)."""
    return Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:test",
                moves=[Move(ct=ct, to=to, method="restart", wave=i // 2, **{"from": source})
                       for i, (ct, source, to) in enumerate(moves)])


def waiting_rebalance(rt: Runtime, moves: list[tuple[str, str, str]]) -> int:
    """A rebalance approved to run inside the (closed) window: it holds its containers and waits."""
    job_id = ops.submit_plan(rt, rebalance(moves), ops.JobOptions(approve=True, window=True))
    assert ops.run_here(rt, job_id).counts == {MoveState.PENDING: len(moves)}
    detail = job_detail(rt.sessions, job_id)
    assert detail["state"] == JobState.APPROVED and "waiting for a maintenance window" in detail["message"]
    return job_id


def moves_of(rt: Runtime, job_id: int) -> dict[str, str]:
    return {m["ct"]: m["state"] for m in job_detail(rt.sessions, job_id)["moves"]}


def priority_events(rt: Runtime, job_id: int) -> list[dict[str, Any]]:
    return [j for j in job_detail(rt.sessions, job_id)["journal"] if "has priority" in str(j["what"])]


def test_ferry_evacuate_takes_over_a_waiting_rebalance(rt: Runtime) -> None:
    lower = waiting_rebalance(rt, [("101", "a", "b"), ("102", "a", "b"), ("104", "a", "c"), ("202", "b", "c")])
    config = Path(str(rt.config.path))
    result = ferry("evacuate", "a", "--yes", "--format", "json", config=config, check=False)
    assert result.returncode == 0, result.stderr
    evacuation = json.loads(result.stdout)["job_id"]
    detail = job_detail(rt.sessions, evacuation)
    assert detail["kind"] == "evacuate" and detail["state"] == JobState.SUCCEEDED
    assert {"101", "102", "104"} <= {m["ct"] for m in detail["moves"]}
    assert rt.backend.discover().on_node("a") == []

    assert moves_of(rt, lower) == {"101": MoveState.YIELDED, "102": MoveState.YIELDED,
                                   "104": MoveState.YIELDED, "202": MoveState.PENDING}
    lower_detail = job_detail(rt.sessions, lower)
    assert lower_detail["state"] == JobState.APPROVED  # 202 b -> c still waits for the window
    [event] = priority_events(rt, lower)
    assert f"job {evacuation} (evacuate) has priority: it took 101, 102, 104" in event["what"]
    assert "1 moves left, as planned" in event["what"]
    assert all(f"taken over by job {evacuation}" in m["message"] for m in lower_detail["moves"]
               if m["state"] == MoveState.YIELDED)


def test_the_api_evacuation_takes_over_and_a_rebalance_left_with_nothing_ends(rt: Runtime) -> None:
    lower = waiting_rebalance(rt, [("101", "a", "b"), ("102", "a", "b")])
    api = TestClient(create_app(rt, token=TOKEN), headers=AUTH)
    created = api.post("/v1/evacuate", json={"nodes": ["a"], "approve": True})
    assert created.status_code == 201, created.text
    evacuation = created.json()["id"]
    lower_detail = job_detail(rt.sessions, lower)
    assert lower_detail["state"] == JobState.SUCCEEDED  # nothing left to move: it yields and ends
    assert lower_detail["message"] == f"succeeded: yielded its moves to job {evacuation}"
    assert "nothing left to move: the job yields" in priority_events(rt, lower)[0]["what"]
    worker = Worker(rt)
    worker.start()
    try:
        wait_for(lambda: api.get(f"/v1/jobs/{evacuation}").json()["state"] == JobState.SUCCEEDED, WAIT_S)
    finally:
        worker.stop()
    assert rt.backend.discover().on_node("a") == []
    # A lower job never takes from a higher one: a drain of a, or a rebalance of its containers, is refused.
    again = api.post("/v1/evacuate", json={"nodes": ["b"], "approve": False})
    assert again.status_code == 201
    drain = api.post("/v1/drain", json={"nodes": ["b"]})
    assert "node='b': is already being evacuated by job" in error_of(drain, 409)


def test_a_drain_yields_to_an_evacuation_of_its_node(rt: Runtime) -> None:
    drain = ops.submit_nodes(rt, "drain", ops.NodesJobRequest(nodes=["a"], window=True, approve=True)).job_id
    assert drain is not None
    result = ferry("drain", "a", "--yes", config=Path(str(rt.config.path)), check=False)
    assert result.returncode == 2 and f"is already being drained by job {drain}" in result.stderr
    evacuation = ops.submit_nodes(rt, "evacuate", ops.NodesJobRequest(nodes=["a"], approve=True)).job_id
    assert evacuation is not None
    assert set(moves_of(rt, drain).values()) == {MoveState.YIELDED}
    assert job_detail(rt.sessions, drain)["state"] == JobState.SUCCEEDED
    assert rt.engine().run_job(evacuation).state == JobState.SUCCEEDED


class HeldCopy:
    """A progress callback that holds the first copy it sees until released: its move stays running."""

    def __init__(self) -> None:
        self.copying, self.release = threading.Event(), threading.Event()

    def __call__(self, ct: str, step: str, done: int, total: int) -> None:
        if step == "presync" and not self.copying.is_set():
            self.copying.set()
            self.release.wait(WAIT_S)


def test_a_running_move_is_never_interrupted(rt: Runtime) -> None:
    job_id = create_job(rt.sessions, rebalance([("101", "a", "b"), ("102", "a", "b")]), approved=True)
    held = HeldCopy()
    engine = Engine(rt.sessions, rt.backend, rt.policy().model_copy(update={"max_parallel": 1}),
                    rt.config.engine, progress=held)
    runner = threading.Thread(target=engine.run_job, args=(job_id,))
    runner.start()
    try:
        assert held.copying.wait(WAIT_S)
        running = next(ct for ct, state in moves_of(rt, job_id).items() if state == MoveState.RUNNING)
        with pytest.raises(JobConflict, match=f"ct='{running}': is being moved by job {job_id} right now"):
            create_job(rt.sessions, Plan(goal=Goal(kind="evacuate", nodes=["a"]), inventory_digest="sha256:t",
                                         moves=[Move(ct=running, to="c", **{"from": "a"})]), approved=True)
        # Planned against the fleet as it will be, the evacuation leaves the running move alone.
        submitted = ops.submit_nodes(rt, "evacuate", ops.NodesJobRequest(nodes=["a"], approve=True))
        assert submitted.job_id is not None
        assert running not in {m.ct for m in submitted.planned.plan.moves}
    finally:
        held.release.set()
        runner.join(WAIT_S)
    assert moves_of(rt, job_id)[running] == MoveState.SUCCEEDED
    assert rt.engine().run_job(submitted.job_id).state == JobState.SUCCEEDED
    assert rt.backend.discover().on_node("a") == []
