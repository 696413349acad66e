"""Planner quality against the CP-SAT optimum, next to a plain greedy baseline, in one run.

Instances: seeded synthetic fleets (``planners.synthetic``) of 4-10 equal nodes and 20-100
containers with affinity pairs, anti-affinity groups, pinned and pin_to containers. A second
rebalance table uses fleets of mixed node sizes (:func:`mixed_instance`: 4-12 nodes of 64-256 GiB,
80-390 containers, the same rules), a third harder fleets (:func:`hard_instance`): 5-9 nodes of 64, 128 and 256 GiB, VPS
plans of 2-64 GiB, local disks only and each 80 % full, ~45 % of containers in anti-affinity
triples, a fifth of the nodes at 95 %.

- evacuate node 0: only its containers may move. Optimum: CP-SAT over the same units (one solve
  minimising the peak, one minimising the sum of squared utilisations).
- rebalance (aggressiveness 5, max_moves 12) of a fleet whose node 0 is hot: ferry makes ``k``
  moves; the optimum is CP-SAT's with at most ``k`` containers moved. ferry's optional
  ``solver="cp-sat"`` mode is shown too (it may use up to max_moves).

Figures per instance are ratios ``plan / optimum`` (1.000 = optimal) of the peak memory
utilisation and of the sum of squared per-node memory utilisations, each weighted by node size
over the mean (the planner's objective; on equal nodes the plain sum); the table prints medians,
90th percentiles and maxima, for ferry and for the baseline (hottest node -> least-loaded node,
one container at a time; for evacuation, each container to the least-loaded node that accepts
it). Every plan is checked with ``check_plan``. The last row is the peak of CP-SAT's
sum-of-squares optimum against the peak optimum: how far the objective itself trades the peak
for balance elsewhere (on mixed node sizes a full small node can weigh less than a big one
at 85 %).

Run: ``.venv/bin/python -m bench.planner_quality`` (about 5 minutes on 2 cores; 25 minutes on a
loaded machine). ``--peak [SECONDS]``: only the mixed and hard rebalance tables, CP-SAT limited to
SECONDS (default 2) per objective, without ferry's solver="cp-sat" mode (a few minutes).
"""

from __future__ import annotations

import random
import statistics
import time

from fleet import Policy
from fleet.model import Inventory
from planners import check_plan, plan_evacuate, plan_rebalance
from planners.cpsat import solve
from planners.filters import Ctx
from planners.ranking import rank
from planners.state import FleetState
from planners.synthetic import Shape, synthetic_fleet
from planners.units import Unit, all_units, units_of

INSTANCES = 20
EVAC_LIMIT_S = 3.0
REBALANCE_LIMIT_S = 5.0
CPSAT_MODE_LIMIT = 2.0  # ferry's own solver="cp-sat" mode (deterministic time units)
MEAN_CT_MB = 3584  # mean of the synthetic VPS sizes


def instance(seed: int, hot: bool) -> Inventory:
    rng = random.Random(seed)
    nodes, cts = rng.randint(4, 10), rng.randint(20, 100)
    fill = rng.uniform(0.45, 0.62) if not hot else rng.uniform(0.4, 0.55)
    node_mb = int(round(cts * MEAN_CT_MB / nodes / fill / 1024)) * 1024
    shape = Shape(node_memory_mb=(node_mb,), fill=fill + 0.1, hot_node_fill=0.92 if hot else None)
    return synthetic_fleet(seed, nodes, cts, shape)


#: Harder fleets: nodes of three sizes, VPS plans up to a quarter of the largest node, local
#: disks 80 % full (no shared storage), ~45 % of containers in anti-affinity triples.
HARD_NODE_MB = (65536, 131072, 262144)
HARD_SIZES_MB = (2048, 4096, 8192, 16384, 32768, 65536)
HARD_WEIGHTS = (3, 4, 4, 3, 2, 1)


def hard_instance(seed: int) -> Inventory:
    rng = random.Random(seed)
    nodes = rng.randint(5, 9)
    fill = rng.uniform(0.5, 0.62)
    mean_node = sum(HARD_NODE_MB) / len(HARD_NODE_MB)
    mean_ct = sum(m * w for m, w in zip(HARD_SIZES_MB, HARD_WEIGHTS, strict=True)) / sum(HARD_WEIGHTS)
    cts = int(nodes * mean_node * fill / mean_ct)
    shape = Shape(node_memory_mb=HARD_NODE_MB, fill=fill + 0.1, hot_node_fill=0.95, hot_share=0.2,
                  memory_sizes=HARD_SIZES_MB, memory_weights=HARD_WEIGHTS, anti_affinity_share=0.45,
                  disk_fill=0.8, shared_storage=False)
    return synthetic_fleet(seed, nodes, cts, shape)


#: Mixed fleets: 4-12 nodes of 64, 128, 192 and 256 GiB, the default VPS plans and rules, about
#: 15 % of the nodes hot (92 %).
MIXED_NODE_MB = (65536, 131072, 196608, 262144)


def mixed_instance(seed: int) -> Inventory:
    rng = random.Random(seed)
    nodes = rng.randint(4, 12)
    fill = rng.uniform(0.45, 0.6)
    cts = int(nodes * sum(MIXED_NODE_MB) / len(MIXED_NODE_MB) * fill / MEAN_CT_MB)
    shape = Shape(node_memory_mb=MIXED_NODE_MB, fill=fill + 0.1, hot_node_fill=0.92, hot_share=0.15)
    return synthetic_fleet(seed, nodes, cts, shape)


def metrics(state: FleetState) -> tuple[float, float]:
    utils = {n: state.mem_util(n) for n in state.nodes}
    return max(utils.values()), sum(state.nodes[n].memory_mb / state.mean_memory * u * u
                                    for n, u in utils.items())


def after_moves(inv: Inventory, policy: Policy, moves: list[tuple[str, str]]) -> FleetState:
    state = FleetState(inv, policy)
    for ct, node in moves:
        state.apply(ct, node, state.where[ct].storage)
    return state


def after_solution(inv: Inventory, policy: Policy, units: list[Unit], node_of: dict[str, str]) -> FleetState:
    return after_moves(inv, policy, [(ct, node_of[u.key]) for u in units for ct in u.members])


def baseline_evacuate(inv: Inventory, policy: Policy, node: str) -> FleetState:
    state = FleetState(inv, policy)
    ctx = Ctx(state, frozenset({node}))
    targets = [n for n in state.nodes if n != node]
    for unit in units_of(state, [c.id for c in inv.containers if c.node == node]):
        if unit.immovable:
            continue
        for dst in sorted(targets, key=lambda n: (state.mem_util(n), n)):
            good, _ = rank(ctx, unit, [dst])
            if good:
                for ct in unit.members:
                    state.apply(ct, dst, good[0].storages.get(ct))
                break
    return state


def baseline_rebalance(inv: Inventory, policy: Policy, k: int) -> FleetState:
    state = FleetState(inv, policy)
    ctx = Ctx(state)
    units = {u.key: u for u in all_units(state)}
    unit_of = {ct: u for u in units.values() for ct in u.members}
    moves = 0
    while moves < k:
        hot = max(state.nodes, key=lambda n: (state.mem_util(n), n))
        cold = min(state.nodes, key=lambda n: (state.mem_util(n), n))
        here = sorted({unit_of[ct].key for ct in state.members[hot]})
        options = sorted((units[key] for key in here if not units[key].immovable),
                         key=lambda u: (-u.memory_mb, u.key))
        for unit in options:
            after = (state.mem[cold] + unit.memory_mb) / state.nodes[cold].memory_mb
            good, _ = rank(ctx, unit, [cold])
            if good and after < state.mem_util(hot) and moves + len(unit.members) <= k:
                for ct in unit.members:
                    state.apply(ct, cold, good[0].storages.get(ct))
                moves += len(unit.members)
                break
        else:
            return state
    return state


def optimum(inv: Inventory, policy: Policy, units: list[Unit], emptying: frozenset[str],
            max_moved: int | None, limit: float) -> tuple[tuple[float, float], bool] | None:
    """(best peak, best sum of squares) over CP-SAT solutions, whether both are proven, and the
    peak of the solution minimising the sum of squares (ferry's objective)."""
    best_peak, best_sq, proven, sq_peak = float("inf"), float("inf"), True, float("inf")
    for objective in ("peak", "squares"):
        ctx = Ctx(FleetState(inv, policy), emptying)
        sol = solve(ctx, units, objective, may_stay=not emptying, max_moved=max_moved,
                    time_limit_s=limit, workers=2, deterministic=False)
        if sol is None:
            return None
        peak, sq = metrics(after_solution(inv, policy, units, sol.node_of))
        best_peak, best_sq = min(best_peak, peak), min(best_sq, sq)
        proven = proven and sol.optimal
        if objective == "squares":
            sq_peak = peak
    return (best_peak, best_sq), proven, sq_peak


def run_evacuate(seed: int, policy: Policy) -> dict | None:
    inv = instance(seed, hot=False)
    node = inv.nodes[0].name
    plan = plan_evacuate(inv, [node], policy)
    state = FleetState(inv, policy)
    units = [u for u in units_of(state, [c.id for c in inv.containers if c.node == node])
             if not u.immovable]
    opt = optimum(inv, policy, units, frozenset({node}), None, EVAC_LIMIT_S)
    if opt is None:  # no placement of the evacuees alone exists: ferry must make room first
        made_room = any(m.reason.startswith("make room") for m in plan.moves)
        return {"valid": check_plan(inv, plan, policy) == [] and made_room, "room": True}
    if any("pinned" not in u.reason for u in plan.unplaced):
        return {"valid": False}  # ferry left something unplaced that CP-SAT placed: a failure
    ours = metrics(after_moves(inv, policy, [(m.ct, m.to) for m in plan.moves]))
    base = metrics(baseline_evacuate(inv, policy, node))
    return _row(inv, plan, policy, ours, base, opt)


def run_rebalance(seed: int, policy: Policy, family: str = "equal", limit: float = REBALANCE_LIMIT_S,
                  quick: bool = False) -> dict | None:
    inv = {"hard": hard_instance, "mixed": mixed_instance}.get(family, lambda s: instance(s, hot=True))(seed)
    cpu = time.process_time()
    plan = plan_rebalance(inv, policy)
    cpu = time.process_time() - cpu
    k = len(plan.moves)
    state = FleetState(inv, policy)
    units = [u for u in all_units(state) if not u.immovable]
    opt = optimum(inv, policy, units, frozenset(), k, limit)
    if opt is None:
        return None
    ours = metrics(after_moves(inv, policy, [(m.ct, m.to) for m in plan.moves]))
    base = metrics(baseline_rebalance(inv, policy, k))
    row = _row(inv, plan, policy, ours, base, opt) | {
        "moves": k, "chain": any("chain" in m.reason for m in plan.moves), "cpu_s": cpu,
        "peak_first": any("lower the peak" in m.reason for m in plan.moves)}
    if quick:
        return row
    exact = plan_rebalance(inv, policy, solver="cp-sat", time_limit_s=CPSAT_MODE_LIMIT)
    exact_metrics = metrics(after_moves(inv, policy, [(m.ct, m.to) for m in exact.moves]))
    (opt_peak, opt_sq), _, _ = opt
    return row | {"exact_moves": len(exact.moves), "exact_valid": check_plan(inv, exact, policy) == [],
                  "exact_peak": exact_metrics[0] / opt_peak, "exact_sq": exact_metrics[1] / opt_sq}


def _row(inv, plan, policy, ours, base, opt) -> dict:
    (opt_peak, opt_sq), proven, sq_peak = opt
    return {"valid": check_plan(inv, plan, policy) == [], "proven": proven, "sqopt_peak": sq_peak / opt_peak,
            "peak": ours[0] / opt_peak, "sq": ours[1] / opt_sq,
            "base_peak": base[0] / opt_peak, "base_sq": base[1] / opt_sq}


def _summary(name: str, rows: list[dict]) -> list[str]:
    good = [r for r in rows if "peak" in r]
    valid = sum(r["valid"] for r in rows)
    out = [f"{name}: {len(rows)} instances, {valid} valid plans ({100 * valid / max(len(rows), 1):.0f} %), "
           f"optimum proven on {sum(r['proven'] for r in good)}"]
    room = sum(1 for r in rows if r.get("room"))
    if room:
        out[0] += (f"; {room} need a make-room move (CP-SAT: no placement of the evacuees alone), "
                   "ratios over the others")
    out.append(f"  {'ratio to optimum':<28}{'median':>8}{'p90':>8}{'max':>8}")
    labels = [("peak", "ferry peak"), ("sq", "ferry sum of squares"),
              ("base_peak", "greedy baseline peak"), ("base_sq", "greedy baseline sum sq"),
              ("sqopt_peak", "sum-sq optimum's own peak")]
    if good and "exact_peak" in good[0]:
        labels[2:2] = [("exact_peak", "ferry solver=cp-sat peak"), ("exact_sq", "ferry solver=cp-sat sum sq")]
        exact_valid = sum(r["exact_valid"] for r in good)
        out[0] += f"; solver=cp-sat plans valid: {exact_valid}/{len(good)}"
    for key, label in labels:
        vals = sorted(r[key] for r in good)
        p90 = vals[min(len(vals) - 1, int(0.9 * len(vals)))]
        out.append(f"  {label:<28}{statistics.median(vals):>8.3f}{p90:>8.3f}{vals[-1]:>8.3f}")
    if good and "cpu_s" in good[0]:
        cpu = sorted(r["cpu_s"] for r in good)
        out.append(f"  ferry peak above 1.01 of the optimum on {sum(r['peak'] > 1.01 for r in good)} of {len(good)}; "
                   f"{sum(r['peak_first'] for r in good)} plans took the peak-first stage; planning CPU s "
                   f"median {statistics.median(cpu):.3f}, max {cpu[-1]:.3f}")
    return out


def main_peak(limit: float) -> None:
    """Only the mixed and hard rebalance tables, CP-SAT limited to ``limit`` s per objective and
    without ferry's own solver="cp-sat" mode: the peak-first figures in a few minutes."""
    started = time.perf_counter()
    policy = Policy(aggressiveness=5, max_moves=12)
    for family, base in (("mixed", 3000), ("hard", 2000)):
        rows = [r for r in (run_rebalance(base + s, policy, family, limit, quick=True) for s in range(INSTANCES))
                if r is not None]
        moves = sorted(r["moves"] for r in rows)
        print("\n".join(_summary(f"rebalance, {family} fleets (max_moves 12; ferry used {moves[0]}-{moves[-1]} "
                                 f"moves; CP-SAT {limit:g} s per objective)", rows)))
        worst = sorted(rows, key=lambda r: -r["peak"])[:3]
        print("  worst peaks: " + ", ".join(f"{r['peak']:.3f}" for r in worst))
    print(f"total {time.perf_counter() - started:.0f} s")


def main() -> None:
    started = time.perf_counter()
    evac_policy = Policy()
    rebalance_policy = Policy(aggressiveness=5, max_moves=12)
    evac = [r for r in (run_evacuate(s, evac_policy) for s in range(INSTANCES)) if r is not None]
    rebal = [r for r in (run_rebalance(1000 + s, rebalance_policy) for s in range(INSTANCES)) if r is not None]
    print("\n".join(_summary("evacuate", evac)))
    moves = sorted(r["moves"] for r in rebal)
    print("\n".join(_summary(f"rebalance (max_moves 12; ferry used {moves[0]}-{moves[-1]} moves)", rebal)))
    print("(rebalance optimum: CP-SAT with at most as many moves as ferry's default plan; solver=cp-sat "
          "may use up to max_moves, hence ratios below 1)")
    mixed = [r for r in (run_rebalance(3000 + s, rebalance_policy, "mixed") for s in range(INSTANCES))
             if r is not None]
    moves = sorted(r["moves"] for r in mixed)
    print("\n".join(_summary(f"rebalance, mixed node sizes (max_moves 12; ferry used {moves[0]}-{moves[-1]} moves)",
                             mixed)))
    hard = [r for r in (run_rebalance(2000 + s, rebalance_policy, "hard") for s in range(INSTANCES))
            if r is not None]
    moves = sorted(r["moves"] for r in hard)
    print("\n".join(_summary(f"rebalance, hard fleets (max_moves 12; ferry used {moves[0]}-{moves[-1]} moves, "
                             f"{sum(r['chain'] for r in hard)} plans with an ejection chain)", hard)))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    import sys

    if "--peak" in sys.argv:  # python -m bench.planner_quality --peak [CP-SAT seconds]
        rest = sys.argv[sys.argv.index("--peak") + 1:]
        main_peak(float(rest[0]) if rest else 2.0)
    else:
        main()
