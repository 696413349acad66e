"""Node lifecycle: the transition table, and what planners see of a node's state (pure parts)."""

from __future__ import annotations

import json

import pytest

from fleet.policy import Policy
from fleet.snapshot import dump_inventory, load_inventory, parse_inventory
from planners import place, plan_evacuate, plan_rebalance
from service.nodes import (
    NODE_TRANSITIONS,
    NodeConflict,
    NodeEvent,
    NodeState,
    already_there,
    apply_node_states,
    node_transition,
    receiving_again,
)
from tests.conftest import SMALL_FLEET


def test_the_table_walks_the_whole_cycle_and_every_state_is_reachable() -> None:
    state = NodeState.ACTIVE
    for event in (NodeEvent.CORDON, NodeEvent.DRAIN, NodeEvent.DRAINED, NodeEvent.RESTORE, NodeEvent.RESTORED):
        state = node_transition(event, "n1", state)
    assert state is NodeState.ACTIVE
    reached = {t.target for t in NODE_TRANSITIONS.values()}
    assert reached == set(NodeState)


@pytest.mark.parametrize(("event", "state"), [
    (NodeEvent.CORDON, NodeState.DRAINING), (NodeEvent.UNCORDON, NodeState.RESTORING),
    (NodeEvent.RESTORE, NodeState.ACTIVE), (NodeEvent.DRAIN, NodeState.RESTORING),
    (NodeEvent.DRAINED, NodeState.CORDONED),
])
def test_a_refused_transition_names_the_node_and_what_it_is(event: NodeEvent, state: NodeState) -> None:
    with pytest.raises(NodeConflict) as refused:
        node_transition(event, "n7", state)
    assert refused.value.line().startswith(f"node='n7': is {state}; only a node that is")


def test_cordon_and_uncordon_asked_again_change_nothing_while_job_verbs_still_refuse() -> None:
    assert already_there(NodeEvent.CORDON, NodeState.CORDONED)
    assert already_there(NodeEvent.UNCORDON, NodeState.ACTIVE)
    assert not already_there(NodeEvent.CORDON, NodeState.ACTIVE)
    assert not already_there(NodeEvent.CORDON, NodeState.DRAINING)  # more than cordoned: a conflict
    assert not already_there(NodeEvent.UNCORDON, NodeState.MAINTENANCE)  # a real change
    assert not already_there(NodeEvent.DRAIN, NodeState.DRAINING)  # starts a job: refused naming it
    assert not already_there(NodeEvent.RESTORE, NodeState.RESTORING)


def test_a_node_that_is_not_active_receives_nothing_and_says_why() -> None:
    inv = load_inventory(SMALL_FLEET)
    seen = apply_node_states(inv, {"b": "cordoned", "c": NodeState.MAINTENANCE, "zz": "draining"})
    assert [n.receives for n in seen.nodes] == [True, False, False]
    assert seen.node("a") is inv.node("a")  # active nodes are untouched
    assert apply_node_states(inv, {}) is inv
    placed = place(seen, Policy(), cpus=1, memory_mb=512, disk_gb=1)
    assert placed.best == "a"
    reasons = {c["node"]: c["reason"] for c in placed.to_dict()["rejected"]}
    assert reasons == {"b": "b is cordoned (node state): it receives nothing",
                       "c": "c is maintenance (node state): it receives nothing"}
    assert plan_evacuate(seen, ["a"], Policy()).moves == []  # nowhere to go
    assert {m.to for m in plan_rebalance(seen, Policy(aggressiveness=5)).moves} <= {"a"}
    assert receiving_again(seen, "c").node("c").receives


def test_states_travel_in_the_snapshot_only_when_set() -> None:
    inv = load_inventory(SMALL_FLEET)
    plain_json = json.loads(dump_inventory(inv))
    assert all("state" not in n and "cordoned" not in n for n in plain_json["nodes"])
    marked = json.loads(dump_inventory(apply_node_states(inv, {"b": "draining"})))
    assert marked["nodes"][1]["state"] == "draining" and marked["nodes"][1]["cordoned"] is True
    again = parse_inventory(marked)  # an offline plan from that snapshot respects it
    assert not again.node("b").receives and again.node("a").receives
