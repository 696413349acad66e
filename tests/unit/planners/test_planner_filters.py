"""Each filter, scorer and cost rule alone, with the reason string it produces."""

from __future__ import annotations

import pytest

from fleet import Policy
from planners import costs, filters, scorers
from planners.filters import Ctx
from planners.state import FleetState
from planners.units import units_of
from tests.unit.planners.planner_fixtures import ct, fleet, node


def _ctx(inv, policy=None, emptying=()):
    state = FleetState(inv, policy or Policy())
    return Ctx(state, frozenset(emptying))


def _unit(ctx, ct_id):
    return units_of(ctx.state, [ct_id])[0]


def test_node_receives_rejects_offline_and_maintenance():
    inv = fleet([node("a"), node("b", online=False), node("c", maintenance=True)], [ct("1", "a")])
    c = _ctx(inv)
    u = _unit(c, "1")
    assert filters.node_receives(c, u, "a") is None
    assert filters.node_receives(c, u, "b") == "b is offline"
    assert filters.node_receives(c, u, "c") == "c is in maintenance"


def test_excluded_emptying_and_pin_to():
    inv = fleet([node("a"), node("b"), node("c")], [ct("1", "a")], exclude_nodes=["b"],
                pin_to={"1": ["a", "c"]})
    c = _ctx(inv, emptying=["c"])
    u = _unit(c, "1")
    assert filters.not_excluded(c, u, "b") == "b is in exclude_nodes"
    assert filters.not_emptying(c, u, "c") == "c is being emptied"
    assert filters.pin_to(c, u, "b") == "1 is pinned to a, c"
    assert filters.pin_to(c, u, "c") is None


def test_platform_must_match():
    inv = fleet([node("a", platform="openvz"), node("b"), node("c", platform="openvz")], [ct("1", "a")])
    c = _ctx(inv)
    u = _unit(c, "1")
    assert filters.platform(c, u, "b") == "needs a openvz node; b is proxmox"
    assert filters.platform(c, u, "c") is None


def test_anti_affinity_names_the_conflicting_container():
    inv = fleet([node("a"), node("b")], [ct("1", "a"), ct("2", "b")], anti_affinity=[["1", "2"]])
    c = _ctx(inv)
    assert filters.anti_affinity(c, _unit(c, "1"), "b") == "b already runs 2 (anti-affinity with 1)"


def test_proxlb_tags_are_rules():
    inv = fleet([node("a"), node("b")], [ct("1", "a", tags=["plb_anti_affinity_dns"]),
                                         ct("2", "b", tags=["plb_anti_affinity_dns"])])
    c = _ctx(inv)
    assert "anti-affinity" in filters.anti_affinity(c, _unit(c, "1"), "b")


def test_memory_respects_headroom_and_overcommit():
    inv = fleet([node("a", 64), node("b", 64)], [ct("1", "a", 8), ct("2", "b", 52)])
    c = _ctx(inv)
    assert filters.memory(c, _unit(c, "1"), "b") is None  # 60 of 64
    c = _ctx(inv, Policy(memory_headroom=0.1))  # 57.6 usable
    assert filters.memory(c, _unit(c, "1"), "b") == "needs 8.0 GiB RAM; b has 5.6 GiB free"
    c = _ctx(inv, Policy(memory_overcommit=1.5, memory_headroom=0.1))
    assert filters.memory(c, _unit(c, "1"), "b") is None


def test_cpu_counts_configured_cpus_with_overcommit():
    inv = fleet([node("a", cpus=4), node("b", cpus=2)], [ct("1", "a", cpus=3), ct("2", "b", cpus=2)])
    c = _ctx(inv, Policy(cpu_overcommit=2.0))
    assert filters.cpu(c, _unit(c, "1"), "b") == "needs 3 CPUs; b has 2 free (overcommit 2)"
    c = _ctx(inv, Policy(cpu_overcommit=4.0))
    assert filters.cpu(c, _unit(c, "1"), "b") is None


def test_disk_keeps_storage_id_or_falls_back_and_shared_needs_no_room():
    inv = fleet([node("a", shared=True), node("b", local_gb=50, shared=True)],
                [ct("1", "a", disk=40), ct("2", "a", disk=60), ct("3", "a", disk=5000, storage="ceph")])
    st = FleetState(inv, Policy())
    assert filters.assign_storage(st, units_of(st, ["1"])[0], "b") == {"1": "local"}
    # 60 GB does not fit local (50 GB) but fits ceph: it is copied there
    assert filters.assign_storage(st, units_of(st, ["2"])[0], "b") == {"2": "ceph"}
    assert filters.assign_storage(st, units_of(st, ["3"])[0], "b") == {"3": "ceph"}
    inv = fleet([node("a"), node("b", local_gb=50)], [ct("2", "a", disk=60)])
    c = _ctx(inv)
    assert filters.disk(c, _unit(c, "2"), "b") == "needs 60 GB disk for 2; b:local has 50 GB free"


def test_affinity_group_is_one_unit_with_summed_demand():
    inv = fleet([node("a", 64), node("b", 64)], [ct("1", "a", 8), ct("2", "a", 8), ct("3", "b", 50)],
                affinity=[["1", "2"]])
    c = _ctx(inv)
    u = _unit(c, "2")
    assert u.members == ("1", "2") and u.memory_mb == 16 * 1024
    assert filters.memory(c, u, "b") == "needs 16.0 GiB RAM; b has 14.0 GiB free"


def test_memory_balance_prefers_equal_utilisation_across_sizes():
    inv = fleet([node("a", 64), node("small", 32), node("big", 128)],
                [ct("1", "a", 4), ct("2", "small", 8), ct("3", "big", 48)])
    c = _ctx(inv)
    u = _unit(c, "1")
    # small ends at 37.5 %, big at 40.6 %: equal-utilisation objective picks small
    assert scorers.memory_balance(c, u, "small", {}) < scorers.memory_balance(c, u, "big", {})


def test_move_cost_prefers_shared_storage():
    inv = fleet([node("a", shared=True), node("b", shared=True)],
                [ct("1", "a", disk=100), ct("2", "a", disk=100, storage="ceph")])
    c = _ctx(inv)
    local = scorers.move_cost(c, _unit(c, "1"), "b", {"1": "local"})
    shared = scorers.move_cost(c, _unit(c, "2"), "b", {"2": "ceph"})
    assert shared < local


@pytest.mark.parametrize(("status", "src", "dst", "prefer", "method"), [
    ("stopped", {}, {}, True, "restart"),
    ("running", {}, {}, True, "live"),
    ("running", {}, {}, False, "restart"),
    ("running", {"platform": "openvz", "kernel": "k1"}, {"platform": "openvz", "kernel": "k2"}, True, "dump"),
    ("running", {"version": "8.3.1"}, {"version": "8.2.0"}, True, "restart"),
    ("running", {"version": "7.4.1"}, {"version": "8.3.1"}, True, "restart"),
])
def test_method_choice(status, src, dst, prefer, method):
    inv = fleet([node("a", **src), node("b", **dst)], [ct("1", "a", status=status)])
    a, b = inv.nodes
    assert costs.choose_method(inv.containers[0], a, b, Policy(prefer_live=prefer)) == method


def test_predicted_cost_follows_size_link_and_dirty_rate():
    inv = fleet([node("a"), node("b")], [ct("1", "a", disk=100, status="stopped"),
                                         ct("2", "a", disk=100, dirty_mb_per_s=50.0)])
    a, b = inv.nodes
    pol = Policy(link_mb_s={"a->b": 100.0})
    cold = costs.predict(inv.containers[0], a, b, pol, disk_copied=True)
    assert cold.bytes == 100 * 2**30 and cold.downtime_s == 0
    assert cold.duration_s == pytest.approx(1024 + pol.start_s)
    live = costs.predict(inv.containers[1], a, b, pol, disk_copied=True)
    assert live.method == "live" and live.bytes > 100 * 2**30  # the dirty delta is copied again
    assert live.downtime_s < 30 and live.duration_s > 1024
    shared = costs.predict(inv.containers[0], a, b, pol, disk_copied=False)
    assert shared.bytes == 0


def test_cpu_balance_prefers_the_node_with_fewer_configured_cpus():
    inv = fleet([node("a", cpus=8), node("b", cpus=8), node("c", cpus=8)],
                [ct("1", "a", cpus=2), ct("2", "b", cpus=6), ct("3", "c", cpus=1)])
    c = _ctx(inv)
    u = _unit(c, "1")
    assert scorers.cpu_balance(c, u, "c", {}) < scorers.cpu_balance(c, u, "b", {})
    # weighted well below memory: CPU breaks near-ties, memory decides
    assert scorers.cpu_balance(c, u, "b", {}) < scorers.memory_balance(c, u, "b", {})
