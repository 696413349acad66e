"""The REST API over a simulated fleet: auth, one-line JSON errors, plan bytes equal to the CLI's,
the job lifecycle through the worker, metrics read from the store, and ``ferry serve`` as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from fleet.errors import InputError
from fleet.plan import Goal, Move, Plan
from fleet.snapshot import read_document
from service.api import create_app, load_token
from service.config import ApiSection, ScheduleSection, load_config
from service.runtime import Runtime
from service.worker import Worker
from tests.conftest import SMALL_FLEET, sim_config
from tests.doubles.ports import free_port
from tests.integration.sim.test_cli import FERRY, ferry, write_config
from tests.integration.sim.test_sim_engine import make_plan

#: Node a of tests/doubles/fleets/small.yaml emptied by hand, in waves that respect the per-node limits.
EMPTY_A = [("101", "b", "live", 0), ("102", "b", "live", 0), ("103", "c", "restart", 1),
           ("104", "c", "restart", 1), ("105", "b", "restart", 2)]

TOKEN = "t0ken-for-tests-only-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def hand_plan(moves: list[tuple[str, str, str, int]] = EMPTY_A) -> dict[str, Any]:
    """A hand-made plan that passes re-validation (a rebalance need not empty a node)."""
    return Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:test",
                moves=[Move(ct=ct, to=to, method=method, wave=wave, **{"from": "a"})
                       for ct, to, method, wave in moves]).to_dict()


def client_for(rt: Runtime) -> TestClient:
    return TestClient(create_app(rt, token=TOKEN), headers=AUTH)


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return Runtime(sim_config(tmp_path).model_copy(update={"schedule": ScheduleSection(poll_s=0.05)}))


@pytest.fixture
def api(rt: Runtime) -> TestClient:
    return client_for(rt)


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) <= {"error", "changes"}
    assert "\n" not in body["error"] and body["error"]
    return body["error"]


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# -- auth ------------------------------------------------------------------------------------------
def test_every_route_but_healthz_and_the_openapi_document_needs_the_token(api: TestClient) -> None:
    anonymous = TestClient(api.app)
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    paths = anonymous.get("/openapi.json").json()["paths"]
    assert {"/v1/inventory", "/v1/plans/evacuate", "/v1/jobs", "/v1/jobs/{job_id}/approve", "/metrics"} <= set(paths)
    wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
    for path, ops in paths.items():
        if path == "/healthz":
            continue
        for method in ops:
            url = path.replace("{job_id}", "1")
            for headers in ({}, wrong, {"Authorization": TOKEN}):
                r = anonymous.request(method, url, headers=headers, json={})
                assert "authorization" in error_of(r, 401), (method, url)
                assert r.headers["www-authenticate"] == "Bearer"
    assert api.get("/v1/jobs").json() == []


def test_token_comes_from_the_environment_or_a_file_and_must_be_long(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRY_API_TOKEN", raising=False)
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "token").chmod(0o600)  # a token file others can read is refused
    config = sim_config(tmp_path).model_copy(update={"api": ApiSection(token_file="token"),
                                                     "path": tmp_path / "ferry.toml"})
    assert load_token(config) == TOKEN  # relative to the config file, newline stripped
    monkeypatch.setenv("FERRY_API_TOKEN", "from-the-environment-123")
    assert load_token(config) == "from-the-environment-123"
    monkeypatch.setenv("FERRY_API_TOKEN", "short")
    with pytest.raises(InputError, match="FERRY_API_TOKEN.*shorter than 16"):
        load_token(config)
    monkeypatch.delenv("FERRY_API_TOKEN")
    with pytest.raises(InputError, match=r"api.token_file=\(value hidden\): cannot read the API token"):
        load_token(config.model_copy(update={"api": ApiSection(token_file="missing")}))
    with pytest.raises(InputError, match=r"api.token_file=\(value hidden\).*no API token"):
        load_token(sim_config(tmp_path))


# -- plans -----------------------------------------------------------------------------------------
def test_plans_are_the_same_bytes_as_the_cli_prints(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    cli_evacuate = ferry("plan", "evacuate", "a", "--format", "json", config=config).stdout
    cli_rebalance = ferry("plan", "rebalance", "--aggressiveness", "5", "--format", "json", config=config).stdout
    cli_offline = ferry("plan", "drain", "a", "b", "--inventory", str(SMALL_FLEET), "--format", "json",
                        config=config).stdout
    cli_place = ferry("plan", "place", "--cpus", "2", "--memory", "2048", "--disk", "20", "--format", "json",
                      config=config).stdout
    api = client_for(Runtime(load_config(config)))
    evacuate = api.post("/v1/plans/evacuate", json={"nodes": ["a"]})
    assert evacuate.headers["content-type"] == "application/json"
    assert evacuate.content == cli_evacuate.encode() and json.loads(cli_evacuate)["moves"]
    assert api.post("/v1/plans/rebalance", json={"aggressiveness": 5}).content == cli_rebalance.encode()
    offline = api.post("/v1/plans/drain", json={"nodes": ["a", "b"], "inventory": read_document(SMALL_FLEET)})
    assert offline.content == cli_offline.encode()
    assert api.post("/v1/plans/place", json={"cpus": 2, "memory": 2048, "disk": 20}).json() == json.loads(cli_place)


@pytest.mark.parametrize(("method", "url", "body", "status", "needle"), [
    ("post", "/v1/plans/evacuate", {"nodes": ["zz"]}, 400, "node='zz': no such node"),
    ("post", "/v1/plans/evacuate", {"nodes": []}, 400, "nodes=[]"),
    ("post", "/v1/plans/drain", {"nodes": ["a"], "typo": 1}, 400, "typo=1"),
    ("post", "/v1/plans/rebalance", {"aggressiveness": 9}, 400, "aggressiveness=9"),
    ("post", "/v1/plans/place", {"cpus": 1, "memory": 512}, 400, "disk: is required"),
    ("post", "/v1/plans/evacuate", {"nodes": ["a"], "inventory": {"nodes": "x"}}, 400, "inventory: "),
    ("post", "/v1/jobs", {"plan": {"version": 2}}, 400, "plan: version=2"),
    ("post", "/v1/jobs", {"approve": True}, 400, "plan: is required"),
    ("post", "/v1/jobs", {"plan": hand_plan([])}, 400, "plan.moves=[]: the plan moves nothing"),
    ("get", "/v1/jobs/999", None, 404, "job=999: no such job"),
    ("post", "/v1/jobs/999/cancel", None, 404, "job=999: no such job"),
    ("get", "/v1/jobs?limit=0", None, 400, "limit='0'"),
])
def test_user_mistakes_are_one_json_line_never_a_500(api: TestClient, method: str, url: str, body: Any,
                                                     status: int, needle: str) -> None:
    assert needle in error_of(api.request(method, url, json=body), status)


def test_a_body_that_is_not_json_is_a_400(api: TestClient) -> None:
    r = api.post("/v1/plans/evacuate", content=b"{nodes:", headers={"content-type": "application/json"})
    assert "JSON" in error_of(r, 400)


# -- jobs ------------------------------------------------------------------------------------------
def test_a_plan_the_fleet_no_longer_fits_is_refused_with_what_changed(api: TestClient) -> None:
    stale = make_plan([("101", "c", "live"), ("202", "c", "live")], source="b").to_dict()
    r = api.post("/v1/jobs", json={"plan": stale, "approve": True})
    assert "the fleet changed since it was made: container 101 is now on a" in error_of(r, 409)
    assert r.json()["changes"] == ["container 101 is now on a, the plan expects b"]
    assert api.get("/v1/jobs").json() == []


def test_lifecycle_create_approve_run_by_the_worker(rt: Runtime, api: TestClient) -> None:
    plan = api.post("/v1/plans/evacuate", json={"nodes": ["a"]}).json()
    created = api.post("/v1/jobs", json={"plan": plan})
    assert created.status_code == 201 and created.json()["state"] == "pending"
    job_id = created.json()["id"]
    again = api.post("/v1/jobs", json={"plan": plan, "approve": True})
    assert f"node='a': is already being evacuated by job {job_id} (pending)" in error_of(again, 409)
    assert "only a job that is approved or running can be paused" in error_of(
        api.post(f"/v1/jobs/{job_id}/pause"), 409)
    worker = Worker(rt)
    worker.start()
    try:
        time.sleep(0.2)  # a pending job is not the worker's to run
        assert api.get(f"/v1/jobs/{job_id}").json()["state"] == "pending"
        assert api.post(f"/v1/jobs/{job_id}/approve").json() == {"id": job_id, "from": "pending", "state": "approved"}
        wait_for(lambda: api.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded")
    finally:
        worker.stop()
    detail = api.get(f"/v1/jobs/{job_id}").json()
    assert {m["state"] for m in detail["moves"]} == {"succeeded"} and len(detail["moves"]) == len(plan["moves"])
    assert any(j["kind"] == "command" for j in detail["journal"])
    inventory = api.get("/v1/inventory").json()
    assert not [c for c in inventory["containers"] if c["node"] == "a"]
    assert "is succeeded" in error_of(api.post(f"/v1/jobs/{job_id}/cancel"), 409)


def test_pause_resume_and_cancel_follow_the_cli_rules(rt: Runtime, api: TestClient) -> None:
    job_id = api.post("/v1/jobs", json={"plan": hand_plan(EMPTY_A[2:3]), "approve": True}).json()["id"]
    assert api.post(f"/v1/jobs/{job_id}/pause").json()["state"] == "paused"
    assert "only a job that is pending can be approved" in error_of(api.post(f"/v1/jobs/{job_id}/approve"), 409)
    assert Worker(rt).run_pending() == []  # paused: nothing to run
    assert api.post(f"/v1/jobs/{job_id}/resume").json() == {"id": job_id, "from": "paused", "state": "approved"}
    assert api.post(f"/v1/jobs/{job_id}/cancel").json()["state"] == "cancelling"
    assert Worker(rt).run_pending() == [job_id]
    detail = api.get(f"/v1/jobs/{job_id}").json()
    assert detail["state"] == "cancelled" and detail["moves"][0]["state"] == "cancelled"


# -- metrics ---------------------------------------------------------------------------------------
def scrape(api: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def test_metrics_are_read_from_the_store(tmp_path: Path) -> None:
    faults = [{"kind": "dest_full", "step": "presync-copy", "ct": "104", "remaining": 1},
              {"kind": "transient", "step": "prepare", "ct": "101", "remaining": 1}]
    rt = Runtime(sim_config(tmp_path, faults=faults))
    api = client_for(rt)
    empty = scrape(api)
    assert empty[("ferry_jobs", (("state", "succeeded"),))] == 0
    assert empty[("ferry_last_successful_job_timestamp_seconds", ())] == 0
    assert empty[("ferry_engine_lease_held", ())] == 0
    job_id = api.post("/v1/jobs", json={"plan": hand_plan(), "approve": True}).json()["id"]
    Worker(rt).run_pending()
    detail = api.get(f"/v1/jobs/{job_id}").json()
    moves = {m["ct"]: m for m in detail["moves"]}
    assert moves["104"]["state"] == "rolled_back" and detail["state"] == "failed"
    figures = scrape(api)
    assert figures[("ferry_jobs", (("state", "failed"),))] == 1
    assert figures[("ferry_moves", (("state", "succeeded"),))] == 4
    assert figures[("ferry_moves", (("state", "rolled_back"),))] == 1
    assert figures[("ferry_move_duration_seconds_count", ())] == 4
    durations = [m["figures"]["duration_s"] for m in moves.values() if m["state"] == "succeeded"]
    assert figures[("ferry_move_duration_seconds_sum", ())] == pytest.approx(sum(durations))
    assert figures[("ferry_moved_bytes_total", ())] == sum(
        m["figures"]["bytes"] for m in moves.values() if m["state"] == "succeeded")
    assert figures[("ferry_rollbacks_total", ())] == 1
    assert figures[("ferry_step_retries_total", ())] == 1
    assert figures[("ferry_engine_lease_held", ())] == 0  # the job ended: its lease means nothing
    assert scrape(client_for(Runtime(sim_config(tmp_path / "other"))))[("ferry_jobs", (("state", "failed"),))] == 0


def test_a_held_lease_and_a_succeeded_job_show_in_metrics(rt: Runtime, api: TestClient) -> None:
    job_id = api.post("/v1/jobs", json={"plan": hand_plan(EMPTY_A[2:3]), "approve": True}).json()["id"]
    from service.jobs import claim_job

    claim_job(rt.sessions, job_id, Worker(rt).owner, lease_s=60)
    assert scrape(api)[("ferry_engine_lease_held", ())] == 1
    before = time.time()
    assert rt.engine().run_job(job_id).state == "succeeded"
    figures = scrape(api)
    assert before - 1 <= figures[("ferry_last_successful_job_timestamp_seconds", ())] <= time.time() + 1
    assert figures[("ferry_jobs", (("state", "succeeded"),))] == 1


# -- ferry serve, as a process ---------------------------------------------------------------------


def serve_answers(proc: subprocess.Popen[Any], base: str, log: Path) -> bool:
    """Whether a started ``ferry serve`` answers /healthz yet; fails at once, with its log, if it exited."""
    assert proc.poll() is None, log.read_text()
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_ferry_serve_answers_runs_a_job_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text() + "[schedule]\npoll_s = 0.2\n")
    port = free_port()
    env = {**os.environ, "FERRY_API_TOKEN": TOKEN}
    proc = subprocess.Popen([FERRY, "--config", str(config), "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            assert proc.poll() is None, proc.communicate()
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
        wait_for(healthy, timeout=30)
        assert httpx.get(f"{base}/v1/jobs", timeout=5).status_code == 401
        assert httpx.get(f"{base}/v1/jobs", headers=AUTH, timeout=5).json() == []
        created = httpx.post(f"{base}/v1/jobs", headers=AUTH, timeout=30,
                             json={"plan": hand_plan(EMPTY_A[2:3]), "approve": True})
        assert created.status_code == 201, created.text
        job_url = f"{base}/v1/jobs/{created.json()['id']}"
        wait_for(lambda: httpx.get(job_url, headers=AUTH, timeout=5).json()["state"] == "succeeded")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "ferry serve: stopped" in err and TOKEN not in out + err
