"""One rule, one place: a rule in planners.rules.RULES reaches every planner stage.

The zone-spread rule (containers tagged ``zone_spread_<group>`` run in different zones) is one
``Rule`` in planners/rules.py. Registered (as it is by default), it is honoured by the filters
(ranking and placement), the violation detector (rebalance fixes), the exact model (CP-SAT), the
waves and their ``after`` dependencies, and check_plan; unregistered, the same fleets plan as
before. This is the whole of what adding a hard rule takes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleet import Policy
from planners import check_plan, plan_evacuate, plan_rebalance
from planners.cpsat import solve
from planners.ranking import rank
from planners.rulebook import Ctx, Rule
from planners.rules import RULES
from planners.state import FleetState
from planners.units import units_of
from planners.waves import Step, assign_waves
from tests.unit.planners.planner_fixtures import ct, fleet, node

TAG = "zone_spread_web"
ZONE_SPREAD = next(r for r in RULES.rules if r.name == "zone_spread")


def _zones_fleet(web2_on: str, filler_gib: float = 16):
    """a, b in zone z1; c, d in zone z2; web 1 on a, web 2 on ``web2_on``, a filler on d."""
    nodes = [node("a", zone="z1"), node("b", zone="z1"), node("c", zone="z2"), node("d", zone="z2")]
    cts = [ct("1", "a", tags=[TAG]), ct("2", web2_on, tags=[TAG]),
           ct("3", "d", filler_gib)]
    return fleet(nodes, cts)


@pytest.fixture
def zone_rule() -> Iterator[Rule]:
    assert "zone_spread" in {r.name for r in RULES.rules}
    yield ZONE_SPREAD
    assert "zone_spread" in {r.name for r in RULES.rules}


def test_registered_rule_filters_nodes_with_its_reason(zone_rule):
    ctx = Ctx(FleetState(_zones_fleet("c"), Policy()))
    unit = units_of(ctx.state, ["2"])[0]
    good, bad = rank(ctx, unit, ["a", "b", "d"])
    assert [c.node for c in good] == ["d"]
    assert {(r.node, r.filter, r.reason) for r in bad} == {
        ("a", "zone_spread", "a is in zone z1, where 1 runs (zone spread web with 2)"),
        ("b", "zone_spread", "b is in zone z1, where 1 runs (zone spread web with 2)")}


def test_registered_rule_is_a_rule_filter_before_capacity(zone_rule):
    names = [name for name, _ in RULES.filters]
    assert names.index("zone_spread") < names.index("memory")
    assert names[:names.index("zone_spread")] == ["receives", "not_excluded", "not_emptying", "pin_to",
                                                  "platform", "cluster", "anti_affinity"]


def test_evacuation_honours_the_rule_only_when_registered(zone_rule):
    inv = _zones_fleet("c")
    plan = plan_evacuate(inv, ["c"], Policy())
    assert [(m.ct, m.to) for m in plan.moves] == [("2", "d")]
    assert check_plan(inv, plan, Policy()) == []
    RULES.unregister("zone_spread")
    assert [(m.ct, m.to) for m in plan_evacuate(inv, ["c"], Policy()).moves] == [("2", "b")]
    RULES.register(zone_rule)


def test_plan_check_flags_a_move_that_breaks_the_rule(zone_rule):
    inv = _zones_fleet("c")
    RULES.unregister("zone_spread")
    blind = plan_evacuate(inv, ["c"], Policy())  # planned without the rule: 2 lands on b, zone z1
    RULES.register(zone_rule)
    assert check_plan(inv, blind, Policy()) == [
        "move 0 (2 c->b): b is in zone z1, where 1 runs (zone spread web with 2)",
        "2 stays on c: neither moved nor listed as unplaced"]


def test_rebalance_fixes_what_the_detector_finds(zone_rule):
    inv = _zones_fleet("b")  # 1 and 2 both in zone z1
    plan = plan_rebalance(inv, Policy(aggressiveness=1))
    assert [(m.ct, m.to) for m in plan.moves] == [("2", "c")]
    assert plan.moves[0].reason.startswith("fix: 2 shares zone z1 with 1 (zone spread web)")
    assert check_plan(inv, plan, Policy()) == []
    RULES.unregister("zone_spread")
    assert plan_rebalance(inv, Policy(aggressiveness=1)).moves == []
    RULES.register(zone_rule)


def test_exact_model_states_the_rule_as_a_constraint(zone_rule):
    # The rule has a constraint, so the model offers unit 2 every node (its filter does not
    # prune the domain): only the constraint keeps the peak-minimising solver out of zone z1,
    # where a or b gives a lower peak than d.
    ctx = Ctx(FleetState(_zones_fleet("c", filler_gib=8), Policy()), frozenset({"c"}))
    unit = units_of(ctx.state, ["2"])[0]
    solution = solve(ctx, [unit], "peak", may_stay=False, time_limit_s=2.0)
    assert solution is not None and solution.node_of == {"2": "d"}
    RULES.unregister("zone_spread")
    free = solve(ctx, [unit], "peak", may_stay=False, time_limit_s=2.0)
    assert free is not None and free.node_of["2"] in ("a", "b")
    RULES.register(zone_rule)


def test_exact_evacuation_honours_the_rule(zone_rule):
    inv = _zones_fleet("c")
    plan = plan_evacuate(inv, ["c"], Policy(), solver="cp-sat", time_limit_s=2.0)
    assert [(m.ct, m.to) for m in plan.moves] == [("2", "d")]
    assert check_plan(inv, plan, Policy()) == []


def test_registering_a_rule_twice_is_refused(zone_rule):
    with pytest.raises(ValueError, match="already registered"):
        RULES.register(zone_rule)


def test_a_wave_never_brings_a_member_into_a_zone_another_still_holds(zone_rule):
    # 1 leaves zone z1 for e (zone z3) while 2 enters z1: 2 must wait for 1's move.
    inv = fleet([node("a", zone="z1"), node("b", zone="z1"), node("c", zone="z2"), node("e", zone="z3")],
                [ct("1", "a", tags=[TAG]), ct("2", "c", tags=[TAG])])
    steps = assign_waves(FleetState(inv, Policy()), [Step("1", "a", "e", "local", ""),
                                                      Step("2", "c", "b", "local", "")])
    assert [(s.ct, s.wave, s.after) for s in steps] == [("1", 0, []), ("2", 1, ["1"])]
    RULES.unregister("zone_spread")
    steps = assign_waves(FleetState(inv, Policy()), [Step("1", "a", "e", "local", ""),
                                                      Step("2", "c", "b", "local", "")])
    assert [(s.ct, s.wave, s.after) for s in steps] == [("1", 0, []), ("2", 0, [])]
    RULES.register(zone_rule)


def test_nodes_without_a_zone_are_zones_of_their_own(zone_rule):
    ctx = Ctx(FleetState(fleet([node("a"), node("b"), node("c")],
                               [ct("1", "a", tags=[TAG]), ct("2", "b", tags=[TAG])]), Policy()))
    unit = units_of(ctx.state, ["2"])[0]
    good, bad = rank(ctx, unit, ["a", "c"])
    assert [c.node for c in good] == ["c"]
    assert [(r.node, r.reason) for r in bad] == [("a", "a is in node a (no zone), where 1 runs (zone spread web with 2)")]
