"""Ejection chains in the default rebalance: hand-made fleets where only a chain helps, the policy
knobs that must stop one, and generated chain-prone fleets where every plan keeps every rule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet import Policy
from planners import check_plan, plan_rebalance
from tests.unit.planners.planner_fixtures import apply_plan, ct, fleet, node
from tests.unit.planners.planner_oracle import oracle_violations

AGGRESSIVE = Policy(aggressiveness=5)


def _valid(inv, plan, policy):
    assert check_plan(inv, plan, policy) == []
    assert oracle_violations(inv, plan, policy) == []
    return plan


def _two_step():
    # y (16 GiB) may go only to a or b; b lacks 4 GiB until x (6) leaves for c.
    return fleet([node("a", 20), node("b", 20), node("c", 20)],
                 [ct("y", "a", 16), ct("p1", "a", 4), ct("x", "b", 6), ct("p2", "b", 2), ct("w", "c", 4)],
                 pinned=["p1", "p2"], pin_to={"y": ["a", "b"]})


def _three_step():
    # y only fits b once x leaves; x may go only to c, which has room once z leaves for e.
    return fleet([node("a", 20), node("b", 20), node("c", 20), node("e", 20)],
                 [ct("y", "a", 16), ct("p1", "a", 4), ct("x", "b", 8), ct("p2", "b", 2),
                  ct("z", "c", 6), ct("p3", "c", 8)],
                 pinned=["p1", "p2", "p3"], pin_to={"y": ["a", "b"], "x": ["b", "c"]})


def test_two_move_chain_relieves_a_node_no_single_move_can():
    inv = _two_step()
    plan = _valid(inv, plan_rebalance(inv, AGGRESSIVE), AGGRESSIVE)
    moves = [(m.ct, m.from_node, m.to) for m in plan.moves]
    assert moves[:2] == [("x", "b", "c"), ("y", "a", "b")]
    assert plan.moves[0].reason.startswith("rebalance chain (2 moves): x leaves b, which makes room for y;")
    assert plan.moves[1].reason.startswith("rebalance chain (2 moves): y takes the room x made on b;")
    assert plan.moves[1].after == ["x"] and plan.moves[1].wave > plan.moves[0].wave
    assert plan.before["a"].memory == 1.0 and plan.score.peak_memory == 0.9


def test_three_move_chain_when_no_two_move_chain_exists():
    inv = _three_step()
    plan = _valid(inv, plan_rebalance(inv, AGGRESSIVE), AGGRESSIVE)
    assert [(m.ct, m.to) for m in plan.moves] == [("z", "e"), ("x", "c"), ("y", "b")]
    assert plan.moves[0].reason.startswith("rebalance chain (3 moves): z leaves c, which makes room for x;")
    assert plan.moves[1].reason.startswith("rebalance chain (3 moves): x leaves b, which makes room for y;")
    assert plan.moves[2].reason.startswith("rebalance chain (3 moves): y takes the room x made on b;")
    assert [m.wave for m in plan.moves] == [0, 1, 2]
    assert plan.score.peak_memory == 0.9


def test_chain_ejects_for_disk_when_memory_fits():
    # y has the memory on b but not the disk: x (2 GiB, 90 GB local disk) leaves first.
    inv = fleet([node("a", 20), node("b", 20, local_gb=100), node("c", 20)],
                [ct("y", "a", 16, disk=40), ct("p1", "a", 4), ct("x", "b", 2, disk=90),
                 ct("p2", "b", 2, disk=10), ct("w", "c", 4)],
                pinned=["p1", "p2"], pin_to={"y": ["a", "b"]})
    plan = _valid(inv, plan_rebalance(inv, AGGRESSIVE), AGGRESSIVE)
    assert [(m.ct, m.to) for m in plan.moves] == [("x", "c"), ("y", "b")]
    assert "x leaves b, which makes room for y" in plan.moves[0].reason


def test_repeated_chain_plans_converge_without_revisiting_a_placement():
    # A unit moves once per plan, so a second run may still improve; the objective falls every
    # run, so no placement comes back and the runs stop.
    for inv in (_two_step(), _three_step(), *(stuck_fleet(seed) for seed in range(10))):
        seen = {_placement(inv)}
        for _ in range(4):
            plan = plan_rebalance(inv, AGGRESSIVE)
            if not plan.moves:
                break
            inv = apply_plan(inv, plan)
            assert _placement(inv) not in seen
            seen.add(_placement(inv))
        else:
            raise AssertionError("still moving after 4 runs")


def _placement(inv):
    return frozenset((c.id, c.node) for c in inv.containers)


def test_no_chain_beyond_max_moves_level_gain_or_cooldown():
    inv = _two_step()
    assert "y" not in {m.ct for m in plan_rebalance(inv, Policy(aggressiveness=5, max_moves=1)).moves}
    assert [m.ct for m in plan_rebalance(inv, Policy(aggressiveness=5, max_moves=2)).moves] == ["x", "y"]
    assert plan_rebalance(inv, Policy(aggressiveness=1)).moves == []
    # The chain gains 0.1 in all (0.05 a move): a threshold of 0.06 a move stops it, 0.04 does not.
    assert plan_rebalance(inv, Policy(aggressiveness=3, min_gain=0.06)).moves == []
    assert [m.ct for m in plan_rebalance(inv, Policy(aggressiveness=3, min_gain=0.04)).moves] == ["x", "y"]
    now = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    cooling = plan_rebalance(inv, AGGRESSIVE, last_moved={"x": now - timedelta(hours=2)}, now=now)
    assert "y" not in {m.ct for m in cooling.moves}
    three = plan_rebalance(_three_step(), AGGRESSIVE, last_moved={"z": now - timedelta(hours=2)}, now=now)
    assert three.moves == []


def test_chain_keeps_anti_affinity_and_disk_in_every_step():
    # c has the memory for x, but x's anti-affinity partner lives there; d has memory, not disk.
    inv = fleet([node("a", 20), node("b", 20), node("c", 20), node("d", 20, local_gb=30)],
                [ct("y", "a", 16), ct("p1", "a", 4), ct("x", "b", 6, disk=40), ct("p2", "b", 2),
                 ct("q", "c", 4), ct("w", "d", 4, disk=10)],
                pinned=["p1", "p2", "q", "w"], pin_to={"y": ["a", "b"]}, anti_affinity=[["x", "q"]])
    plan = _valid(inv, plan_rebalance(inv, AGGRESSIVE), AGGRESSIVE)
    assert plan.moves == []  # x may go nowhere, so y stays: no chain half-done


def _chain_moves(plan):
    return [m for m in plan.moves if "rebalance chain" in m.reason]


def _assert_chain_reasons_hold(plan):
    """Each ejection names a container that moves onto the node it leaves, within the plan."""
    for m in _chain_moves(plan):
        if "makes room for " in m.reason:
            other = m.reason.split("makes room for ")[1].split(";")[0]
            assert any(n.ct == other and n.to == m.from_node for n in plan.moves), m.reason


def stuck_fleet(seed: int):
    """A fleet of 20 GiB nodes whose hot nodes hold one big container that fits on no other node
    as it stands (random small containers, pins, pin_to and anti-affinity pairs elsewhere)."""
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(rng.randint(3, 7))]
    nodes = [node(n, 20, local_gb=rng.choice((200, 1000))) for n in names]
    cts, pinned = [], []
    for i, name in enumerate(names):
        if i < rng.randint(1, 2):
            cts.append(ct(f"big{i}", name, rng.choice((12, 14, 16))))
            cts.append(ct(f"fill{i}", name, 20 - cts[-1]["memory_mb"] // 1024 - rng.choice((0, 1))))
            pinned.append(f"fill{i}")
            continue
        load = 0
        for j in range(rng.randint(1, 5)):
            mem = rng.choice((1, 2, 4, 6, 8))
            if load + mem <= 16:
                load += mem
                cts.append(ct(f"c{i}_{j}", name, mem, disk=rng.choice((10, 40, 80))))
                if rng.random() < 0.2:
                    pinned.append(cts[-1]["id"])
    small = [c["id"] for c in cts if c["id"].startswith("c") and c["id"] not in pinned]
    rng.shuffle(small)
    anti = [small[k:k + 2] for k in range(0, min(len(small) - 1, 4), 2)]
    pin_to = {c: sorted(rng.sample(names, 2)) for c in small[4:6]}
    return fleet(nodes, cts, pinned=pinned, anti_affinity=anti, pin_to=pin_to)


def test_generated_stuck_fleets_use_chains_and_keep_every_rule():
    with_chains = 0
    for seed in range(40):
        inv = stuck_fleet(seed)
        plan = _valid(inv, plan_rebalance(inv, AGGRESSIVE), AGGRESSIVE)
        _assert_chain_reasons_hold(plan)
        with_chains += bool(_chain_moves(plan))
    assert with_chains >= 10  # the fleets really exercise chains


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(2, 5), st.none() | st.integers(0, 8),
       st.sampled_from([0.0, 0.001, 0.01]), st.sampled_from([0.0, 0.1]), st.sampled_from([1.0, 0.25]))
def test_chain_prone_rebalance_keeps_every_rule(seed, level, max_moves, min_gain, headroom, cpu_overcommit):
    inv = stuck_fleet(seed)
    policy = Policy(aggressiveness=level, max_moves=max_moves, min_gain=min_gain,
                    memory_headroom=headroom, cpu_overcommit=cpu_overcommit)
    plan = _valid(inv, plan_rebalance(inv, policy), policy)
    if max_moves is not None:
        assert len(plan.moves) <= max_moves
    firsts = [m for m in plan.moves if not m.reason.startswith("park ")]
    assert len({m.ct for m in firsts}) == len(firsts)
    _assert_chain_reasons_hold(plan)
    assert plan.to_json() == plan_rebalance(inv, policy).to_json()
