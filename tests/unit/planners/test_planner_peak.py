"""Peak first (planners/peak.py): on nodes of mixed sizes the rebalance lowers the memory peak
before it spreads load, within the move budget, with every plan valid and repeatable."""

from __future__ import annotations

import random

import pytest

from fleet import Policy
from planners import check_plan, plan_rebalance
from planners.peak import MIN_PEAK_GAIN, STRATEGIES, _reach_with, fleet_peak, lowest_peak
from planners.peak_search import search_level
from planners.rebalance import _run, end_peak, fix_violations
from planners.rebalance_run import RebalanceRun
from planners.state import EPS
from planners.synthetic import Shape, synthetic_fleet
from tests.unit.planners.planner_fixtures import apply_plan, ct, fleet, node
from tests.unit.planners.planner_oracle import oracle_violations

AGGRESSIVE = Policy(aggressiveness=5, max_moves=12)


def _mixed(seed: int):
    """A fleet of 64-256 GiB nodes with a few hot ones (the bench's mixed family, smaller)."""
    rng = random.Random(seed)
    nodes = rng.randint(4, 8)
    return synthetic_fleet(seed, nodes, nodes * 12, Shape(node_memory_mb=(65536, 131072, 262144),
                                                          fill=0.6, hot_node_fill=0.92, hot_share=0.2))


def _planned(inv, policy=AGGRESSIVE):
    """The rebalance, checked by the planner's own check and by the independent oracle."""
    plan = plan_rebalance(inv, policy)
    assert check_plan(inv, plan, policy) == [] and oracle_violations(inv, plan, policy) == []
    return plan


def _pinned_behind_a_full_node():
    # x (48 GiB) may run only on h or d; d has room for it only once z (64 GiB) leaves for e.
    return fleet([node("h", 64), node("d", 128), node("e", 256)],
                 [ct("x", "h", 48), ct("y", "h", 12), ct("z", "d", 64), ct("w", "d", 16), ct("v", "e", 64)],
                 pinned=["y", "w", "v"], pin_to={"x": ["h", "d"]})


def test_a_chain_makes_room_for_the_only_unit_that_can_lower_the_peak():
    inv = _pinned_behind_a_full_node()
    run = RebalanceRun(inv, AGGRESSIVE, set())
    found = lowest_peak(run)
    assert found is not None
    assert [(u.key, dst) for u, dst, _ in found.moves] == [("z", "e"), ("x", "d")]
    assert found.level == pytest.approx(0.5)
    plan = _planned(inv)
    assert plan.score.peak_memory == pytest.approx(0.5)
    assert [m.ct for m in plan.moves].index("z") < [m.ct for m in plan.moves].index("x")


def test_the_level_is_reached_within_the_budget_and_every_node_is_at_or_below_it():
    for seed in range(6):
        inv = _mixed(seed)
        run = RebalanceRun(inv, AGGRESSIVE, set())
        fix_violations(run)
        before = fleet_peak(run.state)
        found = lowest_peak(run)
        if found is None:
            continue
        assert sum(len(u.members) for u, _, _ in found.moves) <= run.room()
        assert found.level <= before - MIN_PEAK_GAIN + EPS
        state = run.state.clone()
        for unit, dst, storages in found.moves:
            for member in unit.members:
                state.apply(member, dst, storages.get(member))
        assert fleet_peak(state) == pytest.approx(found.level)


@pytest.mark.parametrize("seed", range(8))
def test_peak_first_never_ends_higher_than_the_balance_search_alone(seed):
    inv = _mixed(seed)
    greedy = _run(inv, AGGRESSIVE, set(), "greedy", 1.0, peak_first=False)
    plan = _planned(inv)
    assert plan.score.peak_memory <= end_peak(greedy.start, greedy.steps) + EPS
    assert len(plan.moves) <= AGGRESSIVE.max_moves
    assert plan.to_json() == plan_rebalance(inv, AGGRESSIVE).to_json()


def test_peak_first_lowers_the_peak_on_mixed_fleets():
    lowered = 0
    for seed in range(8):
        inv = _mixed(seed)
        greedy = _run(inv, AGGRESSIVE, set(), "greedy", 1.0, peak_first=False)
        plan = plan_rebalance(inv, AGGRESSIVE)
        lowered += plan.score.peak_memory < end_peak(greedy.start, greedy.steps) - MIN_PEAK_GAIN + EPS
    assert lowered >= 2


def test_balance_moves_after_the_peak_stage_stay_below_its_level():
    inv = _pinned_behind_a_full_node()
    plan = _planned(inv, Policy(aggressiveness=5))
    inv_after = apply_plan(inv, plan)
    used = {n.name: sum(c.memory_mb for c in inv_after.containers if c.node == n.name) / n.memory_mb
            for n in inv_after.nodes}
    assert max(used.values()) == pytest.approx(0.5)


def test_no_peak_moves_that_do_not_pay_the_threshold_or_when_only_fixes_are_asked_for():
    inv = _pinned_behind_a_full_node()
    assert plan_rebalance(inv, Policy(aggressiveness=1)).moves == []
    assert plan_rebalance(inv, Policy(aggressiveness=3, min_gain=5.0)).moves == []


def test_a_balanced_fleet_plans_nothing_after_a_peak_first_plan():
    inv = _pinned_behind_a_full_node()
    plan = plan_rebalance(inv, AGGRESSIVE)
    assert plan.moves
    assert plan_rebalance(apply_plan(inv, plan), AGGRESSIVE).moves == []


def _two_hot_nodes_one_big_hole():
    # At 50 %: h1 (32 GiB, 75 %) and h2 (64 GiB, 62.5 %) must each shed 8 GiB; the holes are 16 GiB
    # on a and 8 GiB on b. h2's only movable unit, u (16 GiB, pinned to h2, a or b), needs a; h1
    # must shed its two 4 GiB units onto b, not its 16 GiB one (which also fits a, and is what a
    # greedy takes first).
    return fleet([node("h1", 32), node("h2", 64), node("a", 64), node("b", 64)],
                 [ct("x", "h1", 16), ct("y", "h1", 4), ct("z", "h1", 4),
                  ct("u", "h2", 16), ct("p", "h2", 24), ct("q", "a", 16), ct("r", "b", 24)],
                 pinned=["p", "q", "r"], pin_to={"u": ["h2", "a", "b"]})


def test_the_bounded_search_packs_units_into_holes_where_the_greedy_cannot():
    inv = _two_hot_nodes_one_big_hole()
    run = RebalanceRun(inv, AGGRESSIVE, set())
    assert all(_reach_with(run, 0.5, how) is None for how in STRATEGIES)
    found = search_level(run, 0.5, [n.name for n in inv.nodes])
    assert found is not None
    moves, after = found
    assert sorted((u.key, dst) for u, dst, _ in moves) == [("u", "a"), ("y", "b"), ("z", "b")]
    assert fleet_peak(after) <= 0.5 + EPS and fleet_peak(run.state) == 0.75  # the run's state is kept
    plan = _planned(inv)
    assert plan.score.peak_memory <= 0.5
    assert _planned(inv).model_dump_json() == plan.model_dump_json()


def test_the_bounded_search_respects_the_budget():
    inv = _two_hot_nodes_one_big_hole()
    run = RebalanceRun(inv, Policy(aggressiveness=5, max_moves=2), set())
    assert search_level(run, 0.5, [n.name for n in inv.nodes]) is None
