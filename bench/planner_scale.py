"""Planner speed and memory from 1k to 50k containers (50 per node), near-linear growth.

For each size a seeded synthetic fleet (``planners.synthetic``, a quarter of the nodes at 95 %, the rest near 40 %) is planned three ways:
evacuate one node, rebalance with ``max_moves 200``, and ``check_plan`` of that rebalance. Times
are the best of :data:`REPEATS` runs (the machine is shared). The baseline, measured in the same
run on the same snapshot, is one linear pass over it: ``inventory_digest`` (serialise every record
and hash it), the floor cost of any tool that reads the whole snapshot; ratios are against it.
Peak memory is the traced allocation peak of one planning call (tracemalloc) and the process's
maximum resident size at the end.

Two more lines: a chain-prone fleet of 400 nodes (mixed sizes, big VPS, tight disks), where the
rebalance searches ejection chains (``planners.chains``) many times, and an overloaded one, where
it lists thousands of overload violations it mostly cannot fix.

A big node: one node of a 20k-container / 400-node fleet holds 1,000 small containers (an
OpenVZ-style host, ``planners.synthetic.with_big_node``), evacuated whole; then the same node in
a 50k-container / 1,000-node fleet (growth with the fleet), and a 2,500-container node at 50k
(growth with the node). Times are process CPU time (the machine is shared; wall time follows
the load), ratios against the linear pass over the same snapshot. Peak memory: the traced
allocation peak of the evacuation.

Bars: at 20k containers / 400 nodes, evacuate < 0.5 s, rebalance (200 moves) < 5 s, < 1 GiB;
evacuating the 1,000-container node < 1 s.

Run: ``.venv/bin/python -m bench.planner_scale`` (about 1-2 minutes on 2 cores).
"""

from __future__ import annotations

import resource
import time
import tracemalloc
from collections.abc import Callable

from fleet import Policy, effective_rules, inventory_digest
from fleet.model import Inventory
from planners import check_plan, plan_evacuate, plan_rebalance
from planners.synthetic import Shape, synthetic_fleet, with_big_node

SIZES = (1_000, 5_000, 20_000, 50_000)
PER_NODE = 50
REPEATS = 3
POLICY = Policy(aggressiveness=5, max_moves=200, min_gain=0.0001)


def best_time(fn: Callable[[], object], repeats: int = REPEATS,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Best of ``repeats`` runs on ``clock`` (wall time, or ``time.process_time``: CPU time, which
    other processes' load does not count)."""
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def traced_peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def fleet(containers: int) -> Inventory:
    return synthetic_fleet(7, containers // PER_NODE, containers,
                           Shape(node_memory_mb=(393216,), fill=0.45, hot_node_fill=0.95, hot_share=0.25))


def measure(containers: int) -> dict[str, float]:
    inv = fleet(containers)
    node = inv.nodes[1].name
    rebalance = plan_rebalance(inv, POLICY)
    row = {
        "containers": containers, "nodes": len(inv.nodes),
        "linear": best_time(lambda: inventory_digest(inv)),
        "rules": best_time(lambda: effective_rules(inv)),
        "evacuate": best_time(lambda: plan_evacuate(inv, [node], POLICY)),
        "rebalance": best_time(lambda: plan_rebalance(inv, POLICY), repeats=2),
        "check": best_time(lambda: check_plan(inv, rebalance, POLICY), repeats=2),
        "moves": len(rebalance.moves),
        "makespan": rebalance.score.predicted_makespan_s,
        "serial": sum(m.predicted.duration_s for m in rebalance.moves),
        "valid": check_plan(inv, rebalance, POLICY) == [] and check_plan(
            inv, plan_evacuate(inv, [node], POLICY), POLICY) == [],
    }
    if containers >= 20_000:
        row["traced_mib"] = traced_peak_mib(lambda: plan_rebalance(inv, POLICY))
        row["traced_evac_mib"] = traced_peak_mib(lambda: plan_evacuate(inv, [node], POLICY))
    return row


def chain_prone() -> dict[str, float]:
    """400 nodes of 64/128/256 GiB holding VPS of 2-64 GiB, local disks 85 % full, a quarter of
    the nodes full: hot nodes whose big units fit nowhere, so rebalance searches ejection chains."""
    shape = Shape(node_memory_mb=(65536, 131072, 262144), fill=0.75, hot_node_fill=1.0, hot_share=0.25,
                  memory_sizes=(2048, 4096, 8192, 16384, 32768, 65536), memory_weights=(3, 4, 4, 3, 2, 1),
                  disk_fill=0.85, shared_storage=False)
    inv = synthetic_fleet(7, 400, 3300, shape)
    plan = plan_rebalance(inv, POLICY)
    return {"containers": len(inv.containers), "linear": best_time(lambda: inventory_digest(inv)),
            "rebalance": best_time(lambda: plan_rebalance(inv, POLICY), repeats=2),
            "moves": len(plan.moves), "chain": sum("rebalance chain" in m.reason for m in plan.moves),
            "valid": check_plan(inv, plan, POLICY) == []}


def overloaded() -> dict[str, float]:
    """20k containers of 2-64 GiB on 400 nodes of 64-256 GiB: demand far above capacity, so the
    rebalance lists thousands of overload violations and almost none can be fixed."""
    shape = Shape(node_memory_mb=(65536, 131072, 262144), fill=0.85, hot_node_fill=1.0, hot_share=0.25,
                  memory_sizes=(2048, 4096, 8192, 16384, 32768, 65536), memory_weights=(3, 4, 4, 3, 2, 1),
                  disk_fill=0.85, shared_storage=False)
    inv = synthetic_fleet(7, 400, 20_000, shape)
    plan = plan_rebalance(inv, POLICY)
    return {"linear": best_time(lambda: inventory_digest(inv)), "moves": len(plan.moves),
            "rebalance": best_time(lambda: plan_rebalance(inv, POLICY), repeats=2),
            "valid": check_plan(inv, plan, POLICY) == []}


def big_node(containers: int, held: int) -> dict[str, float]:
    """Evacuate one node holding ``held`` containers of a ``containers``-container fleet."""
    inv = with_big_node(fleet(containers), held)
    node = inv.nodes[1].name
    plan = plan_evacuate(inv, [node], POLICY)
    return {"containers": containers, "nodes": len(inv.nodes), "held": held,
            "linear": best_time(lambda: inventory_digest(inv), 3, time.process_time),
            "evacuate": best_time(lambda: plan_evacuate(inv, [node], POLICY), 3, time.process_time),
            "traced_mib": traced_peak_mib(lambda: plan_evacuate(inv, [node], POLICY)),
            "moves": len(plan.moves), "unplaced": len(plan.unplaced),
            "peak": plan.score.peak_memory, "bound": plan.score.lower_bound_peak_memory,
            "valid": check_plan(inv, plan, POLICY) == []}


def print_big_nodes() -> None:
    print(f"{'big node: containers':>20}{'nodes':>6}{'on node':>8}{'linear s':>9}{'evacuate s':>11}"
          f"{'x lin':>7}{'moves':>6}{'unpl.':>6}{'peak':>7}{'bound':>7}{'traced MiB':>11}{'valid':>6}")
    for containers, held in ((20_000, 1_000), (50_000, 1_000), (50_000, 2_500)):
        r = big_node(containers, held)
        print(f"{r['containers']:>20}{r['nodes']:>6}{r['held']:>8}{r['linear']:>9.3f}{r['evacuate']:>11.3f}"
              f"{r['evacuate'] / r['linear']:>7.2f}{r['moves']:>6}{r['unplaced']:>6}{r['peak']:>7.3f}"
              f"{r['bound']:>7.3f}{r['traced_mib']:>11.0f}{'yes' if r['valid'] else 'NO':>6}")


def main() -> None:
    print_big_nodes()
    rows = [measure(n) for n in SIZES]
    print(f"{'containers':>10}{'nodes':>6}{'linear s':>9}{'evacuate s':>11}{'x lin':>7}{'own s':>7}"
          f"{'rebal s':>9}{'x lin':>7}{'moves':>6}{'check s':>8}{'valid':>6}{'evac ms/1k':>11}")
    for r in rows:
        per_k = 1000 * r["evacuate"] / (r["containers"] / 1000)
        own = r["evacuate"] - r["linear"] - r["rules"]
        print(f"{r['containers']:>10}{r['nodes']:>6}{r['linear']:>9.3f}{r['evacuate']:>11.3f}"
              f"{r['evacuate'] / r['linear']:>7.2f}{own:>7.3f}{r['rebalance']:>9.3f}"
              f"{r['rebalance'] / r['linear']:>7.2f}{r['moves']:>6}{r['check']:>8.3f}"
              f"{'yes' if r['valid'] else 'NO':>6}{per_k:>11.1f}")
    print("own s: evacuate less the fleet helpers every plan calls (inventory_digest for the plan's "
          "digest, effective_rules for ProxLB tags)")
    print("rebalance predicted makespan (waves) vs one move at a time: " + ", ".join(
        f"{r['containers'] // 1000}k {r['makespan'] / 60:.0f} min / {r['serial'] / 60:.0f} min "
        f"= {r['makespan'] / max(r['serial'], 1e-9):.2f}" for r in rows))
    c = chain_prone()
    print(f"chain-prone fleet, {c['containers']} containers of 2-64 GiB on 400 nodes of 64-256 GiB: rebalance "
          f"{c['rebalance']:.3f} s = {c['rebalance'] / c['linear']:.1f} x linear, {c['moves']} moves of which "
          f"{c['chain']} in ejection chains, valid {'yes' if c['valid'] else 'NO'}")
    o = overloaded()
    print(f"overloaded fleet, 20000 containers of 2-64 GiB on 400 nodes, demand above capacity: rebalance "
          f"{o['rebalance']:.3f} s = {o['rebalance'] / o['linear']:.1f} x linear, {o['moves']} moves, "
          f"valid {'yes' if o['valid'] else 'NO'}")
    for r in rows:
        if "traced_mib" in r:
            print(f"{r['containers'] // 1000}k: traced allocation peak of the rebalance {r['traced_mib']:.0f} MiB, "
                  f"of evacuating one node {r['traced_evac_mib']:.0f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS after all sizes (50k snapshots included) {rss:.0f} MiB")


if __name__ == "__main__":
    main()
