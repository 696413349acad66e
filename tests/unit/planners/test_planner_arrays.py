"""The array forms of the planner's arithmetic give the scalar forms' floats, and a big node's
evacuation keeps every rule.

``planners.score_many`` (one unit's score on every node) and ``planners.swaps`` (swap pairs,
relocation deltas (many units at once), move-cost rows) replace per-candidate Python calls; plans stay byte-identical
only if every float and every tie-break is the same, so these tests compare them exactly.
"""

from __future__ import annotations

import pytest

from fleet import Policy
from planners import check_plan, plan_evacuate
from planners.evacuate import _place_all
from planners.improve import TINY, Assignment, _try_swap
from planners.objective import relocation_delta, swap_delta
from planners.rulebook import Ctx
from planners.score_many import order, scores
from planners.scorers import score
from planners.state import FleetState
from planners.swaps import PairRanking, cost_matrix, relocation_table, swap_pairs
from planners.synthetic import Shape, synthetic_fleet, with_big_node
from planners.units import units_of

MIXED = Shape(openvz_share=0.3, node_memory_mb=(65536, 131072, 262144), split_affinity=True)


def _placed(seed: int, shape: Shape) -> tuple[Ctx, Assignment]:
    """Two nodes of a synthetic fleet evacuated greedily (before the local search)."""
    inv = synthetic_fleet(seed, 60, 900, shape)
    state = FleetState(inv, Policy())
    emptying = frozenset({inv.nodes[0].name, inv.nodes[1].name})
    ctx = Ctx(state, emptying)
    units = units_of(state, [c.id for c in inv.containers if c.node in emptying])
    targets = [n.name for n in inv.nodes if n.name not in emptying]
    origin = {ct: state.where[ct] for u in units for ct in u.members}
    assigned, _, _ = _place_all(ctx, units, targets, origin, "evacuate")
    return ctx, assigned


@pytest.mark.parametrize("seed,shape", [(1, Shape(split_affinity=True)), (2, MIXED)])
def test_scores_over_many_nodes_equal_the_scalar_scorers(seed, shape):
    inv = synthetic_fleet(seed, 60, 900, shape)
    ctx = Ctx(FleetState(inv, Policy()))
    nodes = [n.name for n in inv.nodes]
    # Affinity units whose members sit on different nodes: some nodes already hold a member.
    units = units_of(ctx.state, [c.id for c in inv.containers[:120]])
    assert any(len({ctx.state.where[ct].node for ct in u.members}) > 1 for u in units)
    for unit in units:
        many = scores(ctx, unit, nodes)
        assert many is not None
        assert many.tolist() == [score(ctx, unit, n, None) for n in nodes]
        assert list(order(ctx, unit, nodes)) == [n for _, n in sorted((score(ctx, unit, n, None), n)
                                                                      for n in nodes)]


@pytest.mark.parametrize("seed,shape", [(3, Shape()), (4, MIXED)])
def test_swap_pairs_and_relocations_equal_the_pairwise_loop(seed, shape):
    ctx, assigned = _placed(seed, shape)
    st, units = ctx.state, assigned.units()
    expected = []
    for i, a in enumerate(units):
        na = assigned.node_of[a.key]
        for j in range(i + 1, len(units)):
            b = units[j]
            nb = assigned.node_of[b.key]
            if na == nb or a.memory_mb == b.memory_mb:
                continue
            delta = swap_delta(st, a, na, b, nb)
            if delta < -TINY:
                delta += (assigned.cost(a, nb) + assigned.cost(b, na)
                          - assigned.cost(a, na) - assigned.cost(b, nb))
                if delta < -TINY:
                    expected.append((delta, a.key, b.key, i, j))
    expected.sort(key=lambda p: p[:3])
    nodes = sorted({assigned.node_of[u.key] for u in units})
    costs = cost_matrix(st, units, assigned.origin, nodes, {})
    assert costs.tolist() == [[assigned.cost(u, n) for n in nodes] for u in units]
    got = swap_pairs(st, units, lambda u: assigned.node_of[u.key], costs, nodes, TINY)
    assert expected and got == [(i, j) for *_, i, j in expected]
    heres = [assigned.node_of[u.key] for u in units[:50]]
    assert relocation_table(st, units[:50], heres, nodes).tolist() == [
        [relocation_delta(st, u, here, n) for n in nodes] for u, here in zip(units[:50], heres, strict=True)]


@pytest.mark.parametrize("seed,shape", [(5, Shape()), (6, MIXED)])
def test_pairs_ranked_again_after_a_few_swaps_equal_a_full_ranking(seed, shape):
    """The next pass evaluates only the pairs whose units' nodes, loads or storages changed."""
    ctx, assigned = _placed(seed, shape)
    st, units = ctx.state, assigned.units()
    memo = PairRanking()

    def ranked(with_memo: bool) -> list[tuple[int, int]]:
        nodes = sorted({assigned.node_of[u.key] for u in units})
        costs = cost_matrix(st, units, assigned.origin, nodes, {})
        return swap_pairs(st, units, lambda u: assigned.node_of[u.key], costs, nodes, TINY,
                          memo if with_memo else None)

    first = ranked(True)
    assert first == ranked(False)
    swapped = 0
    for i, j in first:
        if swapped < 3 and _try_swap(ctx, assigned, units[i], units[j]):
            swapped += 1
    assert swapped == 3
    again = ranked(True)
    assert memo.found is not None and again == ranked(False) and again != first


def test_a_big_node_evacuates_within_the_rules_at_its_lower_bound():
    inv = with_big_node(synthetic_fleet(7, 40, 2000, Shape(node_memory_mb=(393216,), fill=0.45,
                                                              hot_node_fill=0.95, hot_share=0.25)), 250)
    big = inv.nodes[1].name
    assert sum(c.node == big for c in inv.containers) == 250
    plan = plan_evacuate(inv, [big], Policy())
    assert check_plan(inv, plan, Policy()) == []
    assert {m.ct for m in plan.moves} | {u.ct for u in plan.unplaced} >= {c.id for c in inv.containers
                                                                           if c.node == big}
    assert all(m.to != big for m in plan.moves)
    assert plan.score.lower_bound_peak_memory <= plan.score.peak_memory <= plan.score.lower_bound_peak_memory + 0.01
    again = plan_evacuate(inv, [big], Policy())
    assert again.model_dump_json() == plan.model_dump_json()
