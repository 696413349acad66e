"""Reservations and the fleet as it will be, on the sim backend and a real store.

The reported defect: a rebalance planned and run while an evacuation of node a was paused moved
containers *onto* a, and the evacuation still reported success. Now an active evacuation reserves
its node (no plan may target it; the store refuses a job that does), and every live planner counts
the active jobs' queued and in-flight moves on their destinations."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fleet.plan import Goal, Move, Plan
from planners import plan_rebalance
from service import operations as ops
from service.api import create_app
from service.engine import Engine
from service.jobs import JobConflict, create_job, job_detail
from service.lifecycle import JobState, MoveState
from service.operations.outlook import Outlook, as_it_will_be, read_outlook
from service.runtime import Runtime
from tests.conftest import sim_config
from tests.integration.sim.test_api import AUTH, TOKEN, error_of

#: Moves of the evacuation run before it is paused (the rest stay queued).
RUN_FIRST = 2


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return Runtime(sim_config(tmp_path))


def paused_evacuation(rt: Runtime, node: str = "a") -> int:
    """Evacuate ``node``: run its first moves, then pause it with the rest queued."""
    job_id = ops.submit_nodes(rt, "evacuate", ops.NodesJobRequest(nodes=[node], approve=True)).job_id
    assert job_id is not None
    engine = Engine(rt.sessions, rt.backend, rt.policy(), rt.config.engine,
                    may_start=lambda move: move.seq < RUN_FIRST)
    engine.run_job(job_id)
    ops.control(rt, job_id, "pause")
    states = [m["state"] for m in job_detail(rt.sessions, job_id)["moves"]]
    assert states.count(MoveState.SUCCEEDED) == RUN_FIRST and MoveState.PENDING in states
    return job_id


def test_a_rebalance_during_a_paused_evacuation_never_targets_its_node(rt: Runtime) -> None:
    evacuation = paused_evacuation(rt)
    live = rt.backend.discover()
    with rt.sessions() as session:
        outlook = read_outlook(session)
    assert outlook.reserved == {"a": evacuation}
    # Without the reservation, the fleet as it will be (a empty, b and c full) draws moves onto a:
    unreserved = plan_rebalance(as_it_will_be(live, Outlook({}, outlook.landings), kind="rebalance"),
                                rt.policy())
    assert any(move.to == "a" for move in unreserved.moves)

    planned = ops.plan_rebalancing(rt, ops.RebalanceRequest())
    assert all(move.to != "a" for move in planned.plan.moves)
    queued = {landing.ct for landing in outlook.landings}
    assert {c.id for c in planned.inventory.containers if c.node == "a"} == set()  # queued ones left it
    assert queued and all(planned.inventory.container(ct).node != "a" for ct in queued)
    if planned.plan.moves:
        rebalance = create_job(rt.sessions, planned.plan, approved=True)
        assert rt.engine().run_job(rebalance).state == JobState.SUCCEEDED

    ops.control(rt, evacuation, "resume")
    summary = rt.engine().run_job(evacuation)
    assert summary.state == JobState.SUCCEEDED
    assert rt.backend.discover().on_node("a") == []  # success means the node is empty


def onto(node: str, ct: str, source: str) -> Plan:
    return Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:test",
                moves=[Move(ct=ct, to=node, method="restart", **{"from": source})])


def test_the_store_refuses_any_job_that_moves_onto_a_reserved_node(rt: Runtime) -> None:
    evacuation = paused_evacuation(rt)
    with pytest.raises(JobConflict, match=f"node='a': is reserved by job {evacuation} \\(evacuate, paused\\)"):
        create_job(rt.sessions, onto("a", "201", "b"), approved=True)
    api = TestClient(create_app(rt, token=TOKEN), headers=AUTH)
    answer = api.post("/v1/jobs", json={"plan": onto("a", "201", "b").to_dict(), "approve": True})
    assert "a" in error_of(answer, 409)
    assert "a" not in {m.to for m in ops.plan_nodes(rt, "drain", ops.NodesPlanRequest(nodes=["b"])).plan.moves}
    ranks = ops.place_container(rt, ops.PlaceRequest(cpus=1, memory=512, disk=1))
    assert ranks["best"] != "a" and "a" not in {c["node"] for c in ranks["candidates"]}
    assert {"node": "a", "reason": "a is in maintenance"} in ranks["rejected"]


def test_queued_moves_count_on_their_destinations(rt: Runtime) -> None:
    """Two jobs never count the same free room: a queued move fills its destination for the next plan."""
    filling = Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:test",
                   moves=[Move(ct=ct, to="c", method="restart", **{"from": "a"}) for ct in ("101", "102")])
    create_job(rt.sessions, filling, approved=False)
    fleet = ops.plan_nodes(rt, "drain", ops.NodesPlanRequest(nodes=["b"])).inventory
    live = rt.backend.discover()
    assert {c.id for c in fleet.on_node("c")} == {c.id for c in live.on_node("c")} | {"101", "102"}
    assert fleet.node("c").storage["local"].used_gb == live.node("c").storage["local"].used_gb + 40 + 80
    assert fleet.node("a").storage["local"].used_gb == live.node("a").storage["local"].used_gb - 40 - 80


def test_the_nightly_rebalance_plans_against_the_fleet_as_it_will_be(rt: Runtime) -> None:
    from service.worker import Worker

    paused_evacuation(rt)
    job_id = Worker(rt).rebalance_now()
    moves = job_detail(rt.sessions, job_id)["moves"] if job_id is not None else []
    assert all(move["to"] != "a" for move in moves)


def test_another_jobs_containers_are_pinned_where_they_land_unless_that_node_is_emptied(rt: Runtime) -> None:
    """A chain of a new plan never picks a container another job moves to make room (the store
    refused such an evacuation about one time in ten: the move was running)."""
    queued = Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:test",
                  moves=[Move(ct="101", to="b", method="restart", **{"from": "a"}),
                         Move(ct="102", to="c", method="restart", **{"from": "a"})])
    create_job(rt.sessions, queued, approved=False)
    live = rt.backend.discover()
    with rt.sessions() as session:
        outlook = read_outlook(session)
    fleet = as_it_will_be(live, outlook, kind="drain", nodes=["c"])
    assert "101" in fleet.rules.pinned and "102" not in fleet.rules.pinned  # 102 lands on c, being drained
    assert fleet.container("101").node == "b" and set(live.rules.pinned) <= set(fleet.rules.pinned)
    # A plan that takes nothing over (same priority) leaves both where they land.
    assert {"101", "102"} <= set(as_it_will_be(live, outlook, kind="rebalance").rules.pinned)
    rebalanced = ops.plan_rebalancing(rt, ops.RebalanceRequest(aggressiveness=5)).plan
    assert not {"101", "102"} & {m.ct for m in rebalanced.moves}
