"""Address plans (planners/addresses.py): crossing moves get pool addresses, fixed addresses stay in
their subnet, pools are capacity within a plan and across jobs."""

from __future__ import annotations

import json

import pytest

from fleet.model import Inventory
from fleet.networks import Networks
from fleet.plan import Plan
from fleet.policy import Policy
from fleet.snapshot import inventory_digest, parse_inventory
from planners import plan_evacuate
from planners.addresses import READDRESS_METHOD, plan_with_addresses


def _inventory(cts: list[tuple[str, str, str, list[str]]]) -> Inventory:
    nodes = [{"name": n, "cpus": 8, "memory_mb": 16384, "zone": z}
             for n, z in (("a1", "site-a"), ("a2", "site-a"), ("b1", "site-b"))]
    return parse_inventory({"version": 1, "nodes": nodes, "containers": [
        {"id": i, "node": node, "memory_mb": 1024, "ips": [ip], "tags": tags}
        for i, node, ip, tags in cts]})


def _networks(pool_b: list[str]) -> Networks:
    return Networks.model_validate({"subnets": {
        "lan-a": {"subnet": "10.0.1.0/24", "gateway": "10.0.1.1", "zones": ["site-a"],
                  "pool": ["10.0.1.100-10.0.1.109"]},
        "lan-b": {"subnet": "10.0.2.0/24", "gateway": "10.0.2.1", "nodes": ["b1"], "pool": pool_b}},
        "ttl_s": 120})


def _evacuate(inv: Inventory, networks: Networks, taken: set[str] | None = None,
              allocate=None) -> Plan:
    return plan_with_addresses(lambda i: plan_evacuate(i, ["a1"], Policy()), inv, networks,
                               taken or set(), allocate)


def _full_a2(inv_cts: list[tuple[str, str, str, list[str]]]) -> list[tuple[str, str, str, list[str]]]:
    """a2 filled so that evacuees of a1 must cross to b1."""
    return inv_cts + [(f"9{i}", "a2", f"10.0.1.{50 + i}", []) for i in range(16)]


def test_a_crossing_move_gets_the_next_free_pool_address_and_says_so():
    inv = _inventory(_full_a2([("101", "a1", "10.0.1.5", []), ("102", "a1", "10.0.1.6", [])]))
    plan = _evacuate(inv, _networks(["10.0.2.10-10.0.2.12"]), taken={"10.0.2.10"})
    given = {m.ct: m.address for m in plan.moves}
    assert set(given) == {"101", "102"} and all(m.to == "b1" for m in plan.moves)
    assert sorted(a.to for a in given.values()) == ["10.0.2.11", "10.0.2.12"]
    first = json.loads(plan.to_json())["moves"][0]["address"]
    assert first["from"] in ("10.0.1.5", "10.0.1.6") and first["network"] == "lan-b"
    assert first["gateway"] == "10.0.2.1" and first["old_address_s"] == 120
    assert first["ips"] == [f"{first['to']}/24"]  # a Proxmox net0 takes the new subnet's prefix
    assert plan.inventory_digest == inventory_digest(inv)


def test_a_move_inside_the_subnet_keeps_its_address_and_the_plan_its_contract_keys():
    inv = _inventory([("101", "a1", "10.0.1.5", [])])
    plan = _evacuate(inv, _networks(["10.0.2.10"]))
    assert [m.to for m in plan.moves] == ["a2"]
    assert "address" not in json.loads(plan.to_json())["moves"][0]


def test_a_fixed_address_never_leaves_its_subnet():
    inv = _inventory(_full_a2([("101", "a1", "10.0.1.5", ["fixed-ip"])]))
    plan = _evacuate(inv, _networks(["10.0.2.10-10.0.2.19"]))
    where = {m.ct: m for m in plan.moves}
    assert where["101"].to == "a2" and where["101"].address is None
    # room on a2 was made by moving a container that may change its address
    (room,) = [m for m in plan.moves if m.ct != "101"]
    assert room.to == "b1" and room.address.to == "10.0.2.10"


def test_a_pool_is_capacity_what_it_cannot_serve_stays_unplaced_saying_why():
    inv = _inventory(_full_a2([("101", "a1", "10.0.1.5", []), ("102", "a1", "10.0.1.6", []),
                               ("103", "a1", "10.0.1.7", [])]))
    plan = _evacuate(inv, _networks(["10.0.2.10-10.0.2.11"]))
    addresses = [m.address.to for m in plan.moves if m.address]
    assert len(addresses) == len(set(addresses)) == 2
    (stuck,) = plan.unplaced
    assert "no free address" in stuck.reason and "lan-b" in stuck.reason


def test_an_ipam_hook_allocates_when_the_pool_is_empty():
    inv = _inventory(_full_a2([("101", "a1", "10.0.1.5", [])]))
    nets = Networks.model_validate({**_networks([]).model_dump(), "subnets": {
        **_networks([]).model_dump()["subnets"],
        "lan-b": {"subnet": "10.0.2.0/24", "nodes": ["b1"], "allocate_hook": ["ipam"]}}})
    asked = []
    plan = _evacuate(inv, nets, allocate=lambda net, ct: asked.append((net, ct)) or "10.0.2.77")
    assert asked == [("lan-b", "101")] and plan.moves[0].address.to == "10.0.2.77"


@pytest.mark.parametrize("platform,method", [("openvz", "restart"), ("proxmox", "dump")])
def test_a_move_that_changes_address_is_never_live_and_is_priced_as_it_runs(platform, method):
    inv = _inventory(_full_a2([("101", "a1", "10.0.1.5", [])]))
    inv = inv.model_copy(update={"nodes": [n.model_copy(update={"platform": platform}) for n in inv.nodes]})
    policy = Policy(stop_s=7.0, start_s=2.0)
    plain = plan_evacuate(inv, ["a1"], policy)
    assert {m.ct: m.method for m in plain.moves}["101"] == "live"  # what the planner alone says
    plan = plan_with_addresses(lambda i: plan_evacuate(i, ["a1"], policy), inv,
                               _networks(["10.0.2.10"]), set(), policy=policy)
    (move,) = [m for m in plan.moves if m.ct == "101"]
    assert move.address is not None and move.method == READDRESS_METHOD[platform] == method
    assert move.predicted.downtime_s >= policy.stop_s + policy.start_s
    assert move.predicted.duration_s >= move.predicted.downtime_s
    assert json.loads(plan.to_json())["moves"][0]["method"] == method
    kept = [m for m in plan.moves if m.address is None]
    assert all(m.method == "live" for m in kept)  # moves keeping their address stay live


def test_a_move_inside_the_subnet_stays_live():
    inv = _inventory([("101", "a1", "10.0.1.5", [])])
    plan = _evacuate(inv, _networks(["10.0.2.10"]))
    assert plan.moves[0].address is None and plan.moves[0].method == "live"
