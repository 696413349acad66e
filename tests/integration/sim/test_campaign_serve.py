"""Saved campaigns run by the worker of ``ferry serve`` (service.campaign_drive): node after node,
the per-node hook between drain and restore, pause / resume, a restart of ferry in the middle."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from fleet.errors import InputError
from service import campaign_drive
from service.campaign_hooks import MaintenanceSection
from service.campaign_ops import CampaignCreateRequest, control_campaign, create_campaign, show_campaign
from service.campaign_run import WorldClock, next_opening
from service.config import Config, ScheduleSection, load_config
from service.jobs import job_detail
from service.nodes import NodeState, stored_states
from service.notify import NotificationRow
from service.operations import nodes as node_ops
from service.runtime import Runtime
from service.store import MoveRow
from service.worker import Worker
from tests.conftest import REPO, sim_config
from tests.integration.sim.test_api import client_for
from tests.integration.sim.test_cli import assert_one_line_error, ferry, write_config

HOME_OF_A = {"101", "102", "103", "104", "105"}
CAMPAIGN_FLEET = REPO / "tests" / "doubles" / "fleets" / "campaign.yaml"
MONDAY = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)


def config(tmp: Path, **maintenance: object) -> Config:
    return sim_config(tmp).model_copy(update={"maintenance": MaintenanceSection(**maintenance)})


def where(rt: Runtime) -> dict[str, str]:
    return {c.id: c.node for c in rt.backend.discover().containers}


def serve_poll(worker: Worker) -> None:
    """One round of what ``ferry serve``'s scheduler does: campaigns and notifications, then jobs."""
    campaign_drive.on_poll(worker)
    worker.run_pending()


def drive(worker: Worker, until: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll as ``ferry serve`` does until ``until()`` (bounded)."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "the campaign did not get there in time"
        serve_poll(worker)
        time.sleep(0.02)


def phase(rt: Runtime, campaign_id: int, group: int) -> str:
    return show_campaign(rt, campaign_id)["steps"][group]["phase"]


def told(rt: Runtime) -> dict[str, NotificationRow]:
    with rt.sessions() as session:
        return {row.key: row for row in session.query(NotificationRow)}


def test_a_campaign_runs_node_after_node_with_its_hook_and_survives_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    hook = ["sh", "-c", f'echo "patched $0" >> {log}', "{node}"]
    rt = Runtime(config(tmp_path, hook_command=hook, hook_timeout_s=30))
    homes = where(rt)
    campaign = create_campaign(rt, CampaignCreateRequest(nodes=["a", "b"], maintenance="30min"))
    assert campaign["state"] == "pending" and [s["phase"] for s in campaign["steps"]] == ["waiting", "waiting"]
    worker = Worker(rt)
    serve_poll(worker)
    assert phase(rt, campaign["id"], 0) == "waiting"  # a pending campaign is not started
    assert control_campaign(rt, campaign["id"], "approve") == {"id": campaign["id"], "from": "pending",
                                                               "state": "approved"}
    drive(worker, lambda: phase(rt, campaign["id"], 0) == "done")
    assert log.read_text().startswith("patched a\n")
    # ferry serve restarts: a new process (runtime, worker) continues with the second group
    rt = Runtime(config(tmp_path, hook_command=hook, hook_timeout_s=30))
    drive(Worker(rt), lambda: show_campaign(rt, campaign["id"])["state"] == "succeeded")
    assert log.read_text() == "patched a\npatched b\n"  # each hook ran once
    assert where(rt) == homes and stored_states(rt.sessions) == {}
    shown = show_campaign(rt, campaign["id"])
    for step in shown["steps"]:
        assert step["phase"] == "done" and [h["exit"] for h in step["hooks"].values()] == [0]
        assert all(j["state"] == "succeeded" and j["done"] == j["moves"] > 0 for j in step["drain"] + step["restore"])
        assert step["started_at"] <= step["drained_at"] <= step["restore_at"] <= step["ended_at"]
    assert shown["steps"][0]["ended_at"] <= shown["steps"][1]["started_at"]  # b leaves once a is back
    assert shown["predicted_end"] and shown["actual_end"] == shown["steps"][-1]["ended_at"]
    drain_a = shown["steps"][0]["drain"][0]["job"]
    hooks = [e for e in job_detail(rt.sessions, drain_a)["journal"] if e["detail"].get("hook")]
    assert [(e["what"], e["status"]) for e in hooks] == [(["sh", "-c", hook[2], "a"], 0)]
    keys = set(told(rt))
    assert {f"campaign:{campaign['id']}:step:0", f"campaign:{campaign['id']}:step:1",
            f"campaign:{campaign['id']}:succeeded"} <= keys


def test_pause_holds_the_campaign_and_its_jobs_and_resume_goes_on(tmp_path: Path) -> None:
    rt = Runtime(config(tmp_path))  # no hook: the operator's restore is the "done"
    campaign = create_campaign(rt, CampaignCreateRequest(nodes=["a"], approve=True))
    campaign_drive.drive_campaigns(rt, Worker(rt).clock)  # serve's first look: the drain job exists
    drain = show_campaign(rt, campaign["id"])["steps"][0]["drain"][0]
    assert drain["state"] == "approved" and drain["done"] == 0
    assert control_campaign(rt, campaign["id"], "pause")["state"] == "paused"
    assert job_detail(rt.sessions, drain["job"])["state"] == "paused"
    worker = Worker(rt)
    serve_poll(worker)
    assert show_campaign(rt, campaign["id"])["steps"][0]["drain"][0]["done"] == 0  # nothing moved
    assert control_campaign(rt, campaign["id"], "resume")["state"] == "approved"
    drive(worker, lambda: phase(rt, campaign["id"], 0) == "maintenance")
    serve_poll(worker)
    assert phase(rt, campaign["id"], 0) == "maintenance"  # waits for the operator
    assert stored_states(rt.sessions)["a"].state == NodeState.MAINTENANCE
    node_ops.restore_node(rt, "a", node_ops.NodeRestoreRequest(approve=True))  # the manual "done"
    drive(worker, lambda: show_campaign(rt, campaign["id"])["state"] == "succeeded")
    assert {ct for ct, node in where(rt).items() if node == "a"} == HOME_OF_A


def test_a_failing_hook_and_a_late_done_tell_the_operator_who_restores_by_hand(tmp_path: Path) -> None:
    rt = Runtime(config(tmp_path, hook_command=["sh", "-c", "echo disk full >&2; exit 3"]))
    campaign = create_campaign(rt, CampaignCreateRequest(nodes=["a"], approve=True))
    worker = Worker(rt)
    key = f"campaign:{campaign['id']}:hook:a:failed"
    drive(worker, lambda: key in told(rt))
    assert "exited 3: disk full" in told(rt)[key].body and "ferry node restore a" in told(rt)[key].body
    hook = show_campaign(rt, campaign["id"])["steps"][0]["hooks"]["a"]
    assert hook["state"] == "failed" and hook["exit"] == 3
    serve_poll(worker)
    assert phase(rt, campaign["id"], 0) == "maintenance"  # never restored after a failed hook
    node_ops.restore_node(rt, "a", node_ops.NodeRestoreRequest(approve=True))
    drive(worker, lambda: show_campaign(rt, campaign["id"])["state"] == "succeeded")


def test_a_hook_past_its_timeout_is_killed_and_journaled(tmp_path: Path) -> None:
    rt = Runtime(config(tmp_path, hook_command=["sleep", "30"], hook_timeout_s=0.3))
    campaign = create_campaign(rt, CampaignCreateRequest(nodes=["a"], approve=True))
    started = time.monotonic()
    drive(Worker(rt), lambda: f"campaign:{campaign['id']}:hook:a:failed" in told(rt))
    assert time.monotonic() - started < 20  # killed, not waited for
    step = show_campaign(rt, campaign["id"])["steps"][0]
    assert step["hooks"]["a"]["state"] == "failed" and step["hooks"]["a"]["exit"] is None
    journal = job_detail(rt.sessions, step["drain"][0]["job"])["journal"]
    assert [e["detail"]["timed_out"] for e in journal if e["detail"].get("hook")] == [True]


def test_no_hook_and_no_restore_past_done_timeout_reminds_once(tmp_path: Path) -> None:
    rt = Runtime(config(tmp_path, done_timeout_s=0.01))
    campaign = create_campaign(rt, CampaignCreateRequest(nodes=["a"], approve=True))
    worker = Worker(rt)
    drive(worker, lambda: f"campaign:{campaign['id']}:hook:a:late" in told(rt))
    serve_poll(worker)
    assert sum(k.endswith(":late") for k in told(rt)) == 1


def test_a_hook_interrupted_by_a_restart_is_not_run_again(tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    rt = Runtime(config(tmp_path, hook_command=["sh", "-c", f"echo x >> {marker}; sleep 2"], hook_timeout_s=30))
    campaign = create_campaign(rt, CampaignCreateRequest(nodes=["a"], approve=True))
    worker = Worker(rt)
    drive(worker, lambda: phase(rt, campaign["id"], 0) == "maintenance" and marker.exists())
    campaign_drive._HOOKS.clear()  # what a restart of ferry loses: the thread running the hook
    serve_poll(worker)
    assert show_campaign(rt, campaign["id"])["steps"][0]["hooks"]["a"]["state"] == "interrupted"
    assert f"campaign:{campaign['id']}:hook:a:interrupted" in told(rt)
    time.sleep(2.2)  # the old hook ends: it does not overwrite what the new ferry decided
    serve_poll(worker)
    assert marker.read_text() == "x\n" and phase(rt, campaign["id"], 0) == "maintenance"
    assert show_campaign(rt, campaign["id"])["steps"][0]["hooks"]["a"]["state"] == "interrupted"


def test_campaign_verbs_on_both_surfaces_and_their_refusals(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    made = json.loads(ferry("maintenance", "create", "--nodes", "a,b", "--format", "json", config=path).stdout)
    assert made["state"] == "pending" and len(made["steps"]) == 2
    api = client_for(Runtime(load_config(path)))
    assert [c["id"] for c in api.get("/v1/maintenance/campaigns").json()] == [made["id"]]
    approved = api.post(f"/v1/maintenance/campaigns/{made['id']}/approve")
    assert approved.status_code == 200 and approved.json()["state"] == "approved", approved.text
    shown = json.loads(ferry("maintenance", "show", str(made["id"]), "--format", "json", config=path).stdout)
    assert shown == api.get(f"/v1/maintenance/campaigns/{made['id']}").json()
    assert "Campaign 1: approved" in ferry("maintenance", "show", "1", config=path).stdout
    again = ferry("maintenance", "approve", "1", config=path, check=False)
    assert_one_line_error(again, "campaign=1", "is approved")
    assert api.post("/v1/maintenance/campaigns/1/approve").status_code == 409
    assert api.get("/v1/maintenance/campaigns/9").status_code == 404
    pinned = api.post("/v1/maintenance/campaigns", json={"nodes": ["c"], "approve": True})
    assert pinned.status_code == 400 and "c: 301 has no destination" in pinned.json()["error"]  # 301 is pinned
    created = api.post("/v1/maintenance/campaigns", json={"nodes": ["b"], "approve": True})
    assert created.status_code == 201 and created.json()["state"] == "approved", created.text
    assert api.post("/v1/maintenance/campaigns/2/cancel").json() == {"id": 2, "from": "approved", "state": "cancelled"}
    unknown = ferry("maintenance", "create", "--nodes", "zz", config=path, check=False)
    assert unknown.returncode == 2 and "zz" in unknown.stderr



def test_a_drain_already_under_way_is_adopted_not_refused(tmp_path: Path) -> None:
    rt = Runtime(config(tmp_path))
    operators = node_ops.drain_node(rt, "a", node_ops.NodeDrainRequest(approve=True)).job_id
    campaign = create_campaign(rt, CampaignCreateRequest(nodes=["a"], approve=True))
    campaign_drive.drive_campaigns(rt, Worker(rt).clock)
    shown = show_campaign(rt, campaign["id"])
    assert shown["state"] == "running" and shown["steps"][0]["drain_jobs"] == {"a": operators}


def test_a_drain_that_fails_fails_the_campaign_and_is_told(tmp_path: Path) -> None:
    faults = [{"kind": "fail", "step": "preflight", "ct": "103", "remaining": 5}]
    rt = Runtime(sim_config(tmp_path, faults=faults))
    campaign = create_campaign(rt, CampaignCreateRequest(nodes=["a", "b"], approve=True))
    drive(Worker(rt), lambda: show_campaign(rt, campaign["id"])["state"] == "failed")
    shown = show_campaign(rt, campaign["id"])
    job = shown["steps"][0]["drain_jobs"]["a"]
    assert shown["message"] == f"the drain of a ended failed (job {job})"
    assert shown["steps"][1]["phase"] == "waiting" and shown["steps"][1]["drain_jobs"] == {}  # b never left
    assert f"campaign:{campaign['id']}:failed" in told(rt)


def test_a_campaign_in_other_windows_than_serve_uses_is_refused_and_a_pending_one_is_told(tmp_path: Path) -> None:
    rt = Runtime(config(tmp_path))
    with pytest.raises(InputError, match=r"^windows=\['sat 01:00 for 2h'\]: a saved campaign moves in the configured"):
        create_campaign(rt, CampaignCreateRequest(nodes=["a"], windows=["sat 01:00 for 2h"]))
    campaign = create_campaign(rt, CampaignCreateRequest(nodes=["a"]))
    serve_poll(Worker(rt))
    serve_poll(Worker(rt))
    assert [k for k in told(rt) if k.startswith("campaign:")] == [f"campaign:{campaign['id']}:pending"]


@pytest.mark.slow
def test_a_saved_campaign_over_four_nodes_keeps_to_its_windows_and_its_predicted_end(tmp_path: Path) -> None:
    """The issue's figure, for a campaign run by serve's driver and worker: 4 nodes, 2-hour windows,
    every move started inside a window, every container home, the end within 15 % of the calendar's.
    The world's clock skips idle hours (campaign_run.WorldClock); the operator restores each node
    when its 30 minutes of maintenance are over."""
    windows = ["daily 01:00 for 2h"]
    base = sim_config(tmp_path, fleet=CAMPAIGN_FLEET, speedup=200.0)
    rt = Runtime(base.model_copy(update={"schedule": ScheduleSection(windows=windows)}))
    homes = where(rt)
    made = create_campaign(rt, CampaignCreateRequest(nodes=["m1", "m2", "m3", "m4"], maintenance="30min",
                                                     start=MONDAY.isoformat(), approve=True))
    clock = WorldClock(rt, MONDAY)
    worker = Worker(rt, clock=clock)
    deadline = time.monotonic() + 600
    while (shown := show_campaign(rt, made["id"]))["state"] == "running" or shown["state"] == "approved":
        assert time.monotonic() < deadline
        before = json.dumps(shown, sort_keys=True)
        serve_poll(worker)
        for step in show_campaign(rt, made["id"])["steps"]:
            if step["phase"] == "maintenance":  # the operator, once the maintenance is over
                clock.skip_to(dt.datetime.fromisoformat(step["drained_at"]) + dt.timedelta(minutes=30))
                for node in step["nodes"]:
                    node_ops.restore_node(rt, node, node_ops.NodeRestoreRequest(approve=True, window=True))
        if json.dumps(show_campaign(rt, made["id"]), sort_keys=True) == before:
            clock.skip_to(next_opening(worker.windows, clock()))
    assert shown["state"] == "succeeded", shown["message"]
    assert where(rt) == homes
    jobs = [j["job"] for s in shown["steps"] for j in s["drain"] + s["restore"]]
    with rt.sessions() as session:
        starts = [m.started_at for m in session.scalars(select(MoveRow).where(MoveRow.job_id.in_(jobs)))]
    assert len(starts) == 2 * 20 and all(worker.windows.is_open(clock.at(t)) for t in starts)
    predicted = (dt.datetime.fromisoformat(shown["predicted_end"]) - MONDAY).total_seconds()
    actual = (dt.datetime.fromisoformat(shown["actual_end"]) - MONDAY).total_seconds()
    assert abs(actual - predicted) <= 0.15 * predicted, (shown["predicted_end"], shown["actual_end"])
    print(f"campaign: {len(starts)} moves, predicted end {shown['predicted_end']}, actual {shown['actual_end']} "
          f"({(actual - predicted) / predicted:+.1%})")
