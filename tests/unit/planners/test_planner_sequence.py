"""Sequencing toward a target placement (parking breaks cycles) and the CP-SAT modes."""

from __future__ import annotations

import pytest

from fleet import InputError, Policy
from fleet.plan import Goal
from planners import check_plan, plan_evacuate, plan_rebalance
from planners.assemble import build_plan
from planners.filters import Ctx
from planners.sequence import Target, sequence
from planners.state import FleetState
from planners.units import units_of
from tests.unit.planners.planner_fixtures import ct, fleet, node
from tests.unit.planners.planner_oracle import oracle_violations


def _swap_fleet(spare_gib: float):
    # a and b are full; x (on a) and y (on b) must trade places. c may have room to park one.
    return fleet([node("a", 16), node("b", 16), node("c", 16)],
                 [ct("x", "a", 10), ct("fa", "a", 6), ct("y", "b", 10), ct("fb", "b", 6),
                  ct("fc", "c", 16 - spare_gib)])


def test_swap_between_full_nodes_is_broken_by_parking():
    inv = _swap_fleet(spare_gib=10)
    state = FleetState(inv, Policy())
    start = state.clone()
    x, y = units_of(state, ["x", "y"])
    steps, dropped = sequence(Ctx(state), [Target(x, "b", "swap"), Target(y, "a", "swap")], max_parks=2)
    assert dropped == []
    assert [(s.ct, s.dst) for s in steps] == [("x", "c"), ("y", "a"), ("x", "b")]
    assert steps[0].reason.startswith("park x on c to break a cycle")
    plan = build_plan(start, Goal(kind="rebalance"), steps, [], movable={"x", "y"}, units=[x, y])
    assert check_plan(inv, plan, Policy()) == [] and oracle_violations(inv, plan, Policy()) == []
    assert plan.moves[1].after == ["x"]  # y enters a once x has left it
    assert plan.moves[2].after == ["x", "y"] and plan.moves[2].wave > plan.moves[1].wave


def test_cycle_without_parking_room_is_dropped_with_reason():
    inv = _swap_fleet(spare_gib=2)
    state = FleetState(inv, Policy())
    x, y = units_of(state, ["x", "y"])
    steps, dropped = sequence(Ctx(state), [Target(x, "b", "swap"), Target(y, "a", "swap")], max_parks=2)
    assert [t.unit.key for t, _ in dropped] == ["x", "y"]  # y cannot go either: a is still full
    assert dropped[0][1] == "no order of the moves makes room: needs 10.0 GiB RAM; b has 0.0 GiB free"
    assert steps == []


def test_cp_sat_modes_are_valid_and_never_worse():
    inv = fleet([node("a", 20), node("b", 20), node("c", 20), node("d", 20)],
                [ct("big", "a", 16), ct("p", "a", 4, pinned=True), ct("m1", "b", 9), ct("m2", "b", 4),
                 ct("m3", "c", 9), ct("m4", "c", 4), ct("s1", "d", 2)])
    policy = Policy(aggressiveness=5, max_moves=6)
    greedy = plan_rebalance(inv, policy)
    exact = plan_rebalance(inv, policy, solver="cp-sat", time_limit_s=5)
    for plan in (greedy, exact):
        assert check_plan(inv, plan, policy) == [] and oracle_violations(inv, plan, policy) == []
    assert exact.score.peak_memory <= greedy.score.peak_memory
    assert exact.to_json() == plan_rebalance(inv, policy, solver="cp-sat", time_limit_s=5).to_json()
    evac = plan_evacuate(inv, ["d"], policy, solver="cp-sat", time_limit_s=5)
    assert check_plan(inv, evac, policy) == [] and evac.score.peak_memory <= plan_evacuate(
        inv, ["d"], policy).score.peak_memory
    with pytest.raises(InputError):
        plan_evacuate(inv, ["d"], policy, solver="magic")


def test_after_names_the_anti_affinity_partner_that_left():
    inv = fleet([node("a"), node("b"), node("c")], [ct("y", "a"), ct("x", "b")], anti_affinity=[["x", "y"]])
    state = FleetState(inv, Policy())
    start = state.clone()
    x, y = units_of(state, ["x", "y"])
    steps, dropped = sequence(Ctx(state), [Target(y, "b", "join"), Target(x, "c", "leave")], max_parks=0)
    assert dropped == [] and [s.ct for s in steps] == ["x", "y"]  # y waits until x has left b
    plan = build_plan(start, Goal(kind="rebalance"), steps, [], movable={"x", "y"}, units=[x, y])
    assert plan.moves[1].after == ["x"] and plan.moves[1].wave == 1
    assert check_plan(inv, plan, Policy()) == []


def test_waves_pack_independent_moves_early_and_keep_dependent_ones_late():
    from planners.waves import Step, assign_waves

    inv = fleet([node("a"), node("b"), node("e", 8), node("f"), node("g"), node("h")],
                [ct("1", "a"), ct("2", "a"), ct("3", "a"), ct("4", "b"), ct("5", "e", 6)])
    start = FleetState(inv, Policy(max_outgoing_per_node=2))
    steps = [Step("1", "a", "f", "local", ""), Step("2", "a", "g", "local", ""),
             Step("3", "a", "h", "local", ""), Step("5", "e", "f", "local", ""),
             Step("4", "b", "e", "local", "")]
    ordered = assign_waves(start, steps)
    waves = {s.ct: s.wave for s in ordered}
    assert waves == {"1": 0, "2": 0, "5": 0, "4": 1, "3": 1}  # 3: a's two outgoing slots are taken
    assert next(s for s in ordered if s.ct == "4").after == ["5"]  # e has room once 5 has left
    assert [s.wave for s in ordered] == sorted(s.wave for s in ordered)


def test_cp_sat_mode_refuses_models_too_large():
    from planners.synthetic import synthetic_fleet

    inv = synthetic_fleet(3, 100, 2500)
    with pytest.raises(InputError) as err:
        plan_rebalance(inv, Policy(aggressiveness=5, max_moves=5, min_gain=0.0), solver="cp-sat")
    assert err.value.key == "solver" and "default solver" in str(err.value)
