"""Node lifecycle on the simulated fleet: cordon, drain, nothing targets the node, restore brings
back exactly the containers that left (their origins kept across a crash of ferry)."""

from __future__ import annotations

import json
from pathlib import Path

from fleet.plan import Goal, Move, Plan
from service import operations as ops
from service.config import load_config
from service.jobs import create_job
from service.nodes import NodeEvent, NodeState, stored_states
from service.operations import nodes as node_ops
from service.operations.requests import PlaceRequest, RebalanceRequest
from service.runtime import Runtime
from tests.conftest import sim_config
from tests.integration.sim.test_api import client_for
from tests.integration.sim.test_cli import assert_one_line_error, ferry, write_config

HOME_OF_A = {"101", "102", "103", "104", "105"}


def state(rt: Runtime, node: str) -> str:
    rows = stored_states(rt.sessions)
    return rows[node].state if node in rows else NodeState.ACTIVE


def where(rt: Runtime) -> dict[str, str]:
    return {c.id: c.node for c in rt.backend.discover().containers}


def no_plan_targets(rt: Runtime, node: str) -> None:
    rebalance = ops.plan_rebalancing(rt, RebalanceRequest(aggressiveness=5)).plan
    assert node not in {m.to for m in rebalance.moves}
    placed = ops.place_container(rt, PlaceRequest(cpus=0.5, memory=256, disk=1.0))
    assert placed["best"] != node and node in {r["node"] for r in placed["rejected"]}
    evacuate = ops.plan_nodes(rt, "evacuate", ops.NodesPlanRequest(nodes=["c"] if node != "c" else ["b"])).plan
    assert node not in {m.to for m in evacuate.moves}


def test_cordon_drain_keeps_the_node_empty_and_restore_brings_exactly_its_containers_home(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path))
    assert node_ops.change(rt, "a", NodeEvent.CORDON) == {"node": "a", "from": "active", "state": "cordoned"}
    no_plan_targets(rt, "a")
    drained = node_ops.drain_node(rt, "a", node_ops.NodeDrainRequest(approve=True))
    assert drained.job_id is not None and state(rt, "a") == NodeState.DRAINING
    assert ops.run_here(rt, drained.job_id).state == "succeeded"
    assert state(rt, "a") == NodeState.MAINTENANCE
    away = where(rt)
    assert not {ct for ct, node in away.items() if node == "a"}
    no_plan_targets(rt, "a")  # the defect: a rebalance refilled a just-drained node
    # a crash of ferry: a new runtime (a new process) knows where everyone came from
    rt = Runtime(sim_config(tmp_path))
    restore = node_ops.restore_node(rt, "a", node_ops.NodeRestoreRequest(approve=True))
    assert sorted(restore.to_dict()["moves"]) == sorted(HOME_OF_A) and restore.stay == []
    assert {(m.from_node, m.to) for m in restore.plan.moves} == {(away[ct], "a") for ct in HOME_OF_A}
    assert state(rt, "a") == NodeState.RESTORING
    assert ops.run_here(rt, restore.job_id).state == "succeeded"
    assert {ct for ct, node in where(rt).items() if node == "a"} == HOME_OF_A
    assert state(rt, "a") == NodeState.ACTIVE


def test_restore_skips_and_lists_containers_moved_or_changed_since(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path))
    drained = node_ops.drain_node(rt, "a", node_ops.NodeDrainRequest(approve=True))
    # the drain job is stored, ferry dies before running it; the next ferry resumes it
    rt = Runtime(sim_config(tmp_path))
    assert [s.state for s in ops.resume_unfinished(rt)] == ["succeeded"]
    assert state(rt, "a") == NodeState.MAINTENANCE
    away = where(rt)
    other = next(n for n in ("b", "c") if n != away["105"])
    moved = Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:test",
                 moves=[Move.model_validate({"ct": "105", "from": away["105"], "to": other, "method": "restart"})])
    assert rt.engine().run_job(create_job(rt.sessions, moved, approved=True)).state == "succeeded"
    with rt.backend.world.transaction() as world:
        world["containers"]["103"]["memory_mb"] = 3072
    restore = node_ops.restore_node(rt, "a", node_ops.NodeRestoreRequest(approve=True))
    stay = {s["ct"]: s["reason"] for s in restore.stay}
    assert set(stay) == {"103", "105"}
    assert stay["105"] == f"moved since: it is on {other}, not {away['105']}"
    assert stay["103"].startswith("changed since it left")
    assert sorted(m.ct for m in restore.plan.moves) == ["101", "102", "104"]
    ops.run_here(rt, restore.job_id)
    final = where(rt)
    assert final["105"] == other and final["103"] == away["103"]  # never forced
    assert {final[ct] for ct in ("101", "102", "104")} == {"a"}
    assert drained.job_id is not None and state(rt, "a") == NodeState.ACTIVE


def test_node_verbs_over_the_api_answer_like_the_cli(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    rt = Runtime(load_config(config))
    api = client_for(rt)
    assert api.post("/v1/nodes/b/cordon").json() == {"node": "b", "from": "active", "state": "cordoned"}
    row = stored_states(rt.sessions)["b"]
    twice = api.post("/v1/nodes/b/cordon")  # like kubectl cordon: already so, nothing changes
    assert twice.status_code == 200 and twice.json() == {"node": "b", "from": "cordoned", "state": "cordoned"}
    result = ferry("node", "cordon", "b", config=config)
    assert result.stdout.strip() == "node b: already cordoned; nothing changed", result.stdout
    again = stored_states(rt.sessions)["b"]
    assert (again.state, again.since, again.message) == (row.state, row.since, row.message)
    uncordoned = json.loads(ferry("node", "uncordon", "c", "--format", "json", config=config).stdout)
    assert uncordoned == {"node": "c", "from": "active", "state": "active"}
    assert api.post("/v1/nodes/c/uncordon").json() == {"node": "c", "from": "active", "state": "active"}
    assert set(stored_states(rt.sessions)) == {"b"}  # no row was written for c
    unknown = api.post("/v1/nodes/zz/uncordon")
    assert unknown.status_code == 400 and "no such node" in unknown.json()["error"]
    listed = {n["node"]: n["state"] for n in api.get("/v1/nodes").json()}
    assert listed == {"a": "active", "b": "cordoned", "c": "active"}
    inventory = {n["name"]: n.get("state") for n in api.get("/v1/inventory").json()["nodes"]}
    assert inventory == {"a": None, "b": "cordoned", "c": None}
    assert 'ferry_node_state{node="b",state="cordoned"} 1.0' in api.get("/metrics").text
    created = api.post("/v1/nodes/a/drain", json={"window": True})
    assert created.status_code == 201 and created.json()["state"] == "pending" and created.json()["window"] is True
    assert api.get("/v1/nodes").json()[0]["state"] == "draining"
    assert api.post("/v1/nodes/a/restore", json={}).status_code == 409
    # cordon asks for "receives nothing", but a draining node is not merely cordoned: a conflict
    result = ferry("node", "cordon", "a", config=config, check=False)
    assert_one_line_error(result, "node='a': is draining")
    refused = api.post("/v1/nodes/a/drain", json={})  # a second drain names the job doing it
    assert refused.status_code == 409 and "is already being drained by job" in refused.json()["error"]


def test_node_drain_and_restore_from_the_cli(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    ferry("node", "drain", "a", "--yes", config=config)
    rows = json.loads(ferry("node", "list", "--format", "json", config=config).stdout)
    assert [(r["node"], r["state"], r["containers"]) for r in rows][0] == ("a", "maintenance", 0)
    snapshot = json.loads(ferry("inventory", "--format", "json", config=config).stdout)
    assert snapshot["nodes"][0]["state"] == "maintenance" and snapshot["nodes"][0]["cordoned"] is True
    drained = stored_states(Runtime(load_config(config)).sessions)["a"]
    assert "nothing to move" in ferry("drain", "a", "--yes", config=config).stdout
    again = stored_states(Runtime(load_config(config)).sessions)["a"]  # a repeated drain changed nothing
    assert (again.state, again.since, again.message) == (drained.state, drained.since, drained.message)
    restored = ferry("node", "restore", "a", "--yes", config=config)
    assert "5 succeeded" in restored.stdout, restored.stdout
    rows = json.loads(ferry("node", "list", "--format", "json", config=config).stdout)
    assert [(r["node"], r["state"], r["containers"]) for r in rows][0] == ("a", "active", 5)
