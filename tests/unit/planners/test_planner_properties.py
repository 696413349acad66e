"""Property tests on generated snapshots: no plan breaks a hard rule in any intermediate state
(check_plan and an independent oracle agree), plans are byte-for-byte deterministic, the stated
lower bound never exceeds the plan's peak, and evacuations account for every container."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet import Policy
from planners import check_plan, plan_drain, plan_evacuate, plan_rebalance
from planners.synthetic import Shape, synthetic_fleet
from tests.unit.planners.planner_oracle import oracle_violations

shapes = st.builds(
    Shape,
    node_memory_mb=st.sampled_from([(131072,), (65536, 131072, 262144), (32768,)]),
    fill=st.floats(0.3, 0.97),
    hot_node_fill=st.none() | st.floats(0.8, 1.0),
    rules=st.booleans(),
    openvz_share=st.sampled_from([0.0, 0.0, 0.5]),
    offline_share=st.sampled_from([0.0, 0.2]),
    shared_storage=st.booleans(),
    split_affinity=st.booleans(),
)
policies = st.builds(
    Policy,
    memory_headroom=st.sampled_from([0.0, 0.05, 0.1]),
    cpu_overcommit=st.sampled_from([1.0, 4.0]),
    max_parallel=st.integers(1, 6),
    max_outgoing_per_node=st.integers(1, 3),
    max_incoming_per_node=st.integers(1, 3),
    prefer_live=st.booleans(),
    aggressiveness=st.integers(1, 5),
    max_moves=st.none() | st.integers(0, 12),
    min_gain=st.sampled_from([0.0, 0.001, 0.01]),
)
fleets = st.builds(lambda seed, n, c, shape: synthetic_fleet(seed, n, c, shape),
                   st.integers(0, 10_000), st.integers(3, 8), st.integers(4, 60), shapes)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_valid(inv, plan, policy):
    assert check_plan(inv, plan, policy) == []
    assert oracle_violations(inv, plan, policy) == []
    assert plan.score.lower_bound_peak_memory <= plan.score.peak_memory + 1e-9
    assert plan.score.moves == len(plan.moves)


@SETTINGS
@given(fleets, policies, st.integers(0, 7), st.booleans())
def test_evacuate_and_drain_keep_every_rule(inv, policy, which, drain):
    names = [n.name for n in inv.nodes]
    goal = [names[which % len(names)]] + ([names[(which + 1) % len(names)]] if drain else [])
    plan = (plan_drain if drain else plan_evacuate)(inv, goal, policy)
    _assert_valid(inv, plan, policy)
    accounted = {m.ct for m in plan.moves} | {u.ct for u in plan.unplaced}
    assert {c.id for c in inv.containers if c.node in goal} <= accounted
    assert plan.to_json() == (plan_drain if drain else plan_evacuate)(inv, goal, policy).to_json()


@SETTINGS
@given(fleets, policies)
def test_rebalance_keeps_every_rule_and_budget(inv, policy):
    plan = plan_rebalance(inv, policy)
    _assert_valid(inv, plan, policy)
    if policy.max_moves is not None:
        assert len(plan.moves) <= policy.max_moves
    firsts = [m for m in plan.moves if not m.reason.startswith("park ")]
    assert len({m.ct for m in firsts}) == len(firsts)  # only a parked container moves twice
    assert plan.to_json() == plan_rebalance(inv, policy).to_json()


@SETTINGS
@given(fleets, policies, st.sampled_from([512, 4096, 16384, 65536]), st.sampled_from([1, 2, 8]))
def test_place_candidates_all_fit_and_rejections_all_fail(inv, policy, memory_mb, cpus):
    from planners import place

    result = place(inv, policy, cpus=cpus, memory_mb=memory_mb, disk_gb=20)
    load = {n.name: sum(c.memory_mb for c in inv.containers if c.node == n.name) for n in inv.nodes}
    sizes = {n.name: n for n in inv.nodes}
    for cand in result.candidates:
        node = sizes[cand.node]
        assert node.online and not node.maintenance
        cap = node.memory_mb * policy.memory_overcommit * (1 - policy.memory_headroom)
        assert load[cand.node] + memory_mb <= cap + 1e-6
    assert {c.node for c in result.candidates} | {r[0] for r in result.rejected} == set(sizes)
    assert [c.score for c in result.candidates] == sorted(c.score for c in result.candidates)
    assert (result.best is None) == (result.unplaceable is not None)
