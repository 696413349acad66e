"""One rule, one place: a rule registered in planners.rules.RULES reaches every planner stage.

The toy rule below ("zone spread": containers tagged ``spread_<group>`` run in different zones)
exists only in this test. Registered, it is honoured by the filters (ranking and placement), the
violation detector (rebalance fixes), the exact model (CP-SAT) and check_plan; unregistered, the
same fleets plan as before. This is the whole of what adding a hard rule takes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleet import Policy
from planners import check_plan, plan_evacuate, plan_rebalance
from planners.cpsat import solve
from planners.exact_model import ExactModel
from planners.ranking import rank
from planners.rulebook import Ctx, Rule
from planners.rules import RULES
from planners.state import FleetState
from planners.units import Unit, units_of
from tests.unit.planners.planner_fixtures import ct, fleet, node

TAG = "spread_"


def _zone(st: FleetState, node_name: str) -> str | None:
    return st.nodes[node_name].zone


def _partners(st: FleetState, ct_id: str) -> set[str]:
    groups = {t for t in st.containers[ct_id].tags if t.startswith(TAG)}
    return {c.id for c in st.inv.containers if c.id != ct_id and groups & set(c.tags)}


def zone_spread(ctx: Ctx, unit: Unit, node_name: str) -> str | None:
    st = ctx.state
    zone = _zone(st, node_name)
    for member in unit.members:
        for other in sorted(_partners(st, member) - set(unit.members)):
            if _zone(st, st.where[other].node) == zone:
                return f"{node_name} is in zone {zone}, where {other} runs (zone spread with {member})"
    return None


def zone_crowding(st: FleetState, units: list[Unit], unit_of: dict[str, Unit]) -> Iterator[tuple[Unit, str]]:
    for ct_id in sorted(st.containers):
        earlier = [o for o in sorted(_partners(st, ct_id)) if o < ct_id
                   and _zone(st, st.where[o].node) == _zone(st, st.where[ct_id].node)]
        if earlier:
            yield unit_of[ct_id], f"{ct_id} shares zone {_zone(st, st.where[ct_id].node)} with {earlier[0]}"


def zone_spread_exact(exact: ExactModel) -> None:
    st = exact.state
    for u in exact.units:
        for other in sorted(set().union(*(_partners(st, m) for m in u.members)) - set(u.members)):
            if other in exact.moving:
                continue  # toy: partners that move too are left to the filters
            banned = [v for (key, n), v in exact.x.items()
                      if key == u.key and _zone(st, n) == _zone(st, st.where[other].node)]
            exact.model.add(sum(banned) == 0)


ZONE_SPREAD = Rule("zone_spread", (("zone_spread", zone_spread),), violations=zone_crowding,
                   fix_order=15, constrain=zone_spread_exact)


def _zones_fleet(web2_on: str, filler_gib: float = 16):
    """a, b in zone z1; c, d in zone z2; web 1 on a, web 2 on ``web2_on``, a filler on d."""
    nodes = [node("a", zone="z1"), node("b", zone="z1"), node("c", zone="z2"), node("d", zone="z2")]
    cts = [ct("1", "a", tags=["spread_web"]), ct("2", web2_on, tags=["spread_web"]),
           ct("3", "d", filler_gib)]
    return fleet(nodes, cts)


@pytest.fixture
def zone_rule() -> Iterator[Rule]:
    with RULES.added(ZONE_SPREAD) as rule:
        yield rule
    assert "zone_spread" not in {r.name for r in RULES.rules}


def test_registered_rule_filters_nodes_with_its_reason(zone_rule):
    ctx = Ctx(FleetState(_zones_fleet("c"), Policy()))
    unit = units_of(ctx.state, ["2"])[0]
    good, bad = rank(ctx, unit, ["a", "b", "d"])
    assert [c.node for c in good] == ["d"]
    assert {(r.node, r.filter, r.reason) for r in bad} == {
        ("a", "zone_spread", "a is in zone z1, where 1 runs (zone spread with 2)"),
        ("b", "zone_spread", "b is in zone z1, where 1 runs (zone spread with 2)")}


def test_registered_rule_is_a_rule_filter_before_capacity(zone_rule):
    names = [name for name, _ in RULES.filters]
    assert names.index("zone_spread") < names.index("memory")
    assert names[:names.index("zone_spread")] == ["receives", "not_excluded", "not_emptying", "pin_to",
                                                  "platform", "anti_affinity"]


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
        "move 0 (2 c->b): b is in zone z1, where 1 runs (zone spread with 2)",
        "2 stays on c: neither moved nor listed as unplaced"]


def test_rebalance_fixes_what_the_detector_finds(zone_rule):
    inv = _zones_fleet("b")  # 1 and 2 both in zone z1
    plan = plan_rebalance(inv, Policy(aggressiveness=1))
    assert [(m.ct, m.to) for m in plan.moves] == [("2", "c")]
    assert plan.moves[0].reason.startswith("fix: 2 shares zone z1 with 1")
    assert check_plan(inv, plan, Policy()) == []
    RULES.unregister("zone_spread")
    assert plan_rebalance(inv, Policy(aggressiveness=1)).moves == []
    RULES.register(zone_rule)


def test_exact_model_states_the_rule_as_a_constraint(zone_rule):
    # The toy rule has a constraint, so the model offers unit 2 every node (its filter does not
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
