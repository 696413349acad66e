"""Planner cases whose plans must not change when the planners are restructured.

Each case is (name, fleet, goal, solver): the fleets of ``config/fleets/`` and
``tests/doubles/fleets/`` plus seeded synthetic ones (:mod:`planners.synthetic`), planned as a
rebalance at three aggressiveness levels, an evacuation, a drain and a placement. :func:`digest`
reduces a plan to the decisions it makes (moves, waves, reasons, storages, unplaced entries), so
a refactor that changes nothing it decides keeps every digest; ``python -m
tests.unit.planners.plan_cases OUT.json`` writes the full plans for a before/after comparison.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fleet import Inventory
from fleet.policy import Policy
from fleet.snapshot import load_inventory
from planners import place, plan_drain, plan_evacuate, plan_rebalance
from planners.synthetic import Shape, synthetic_fleet

ROOT = Path(__file__).resolve().parents[3]
FLEET_FILES = sorted((ROOT / "config" / "fleets").glob("*.yaml")) + sorted(
    (ROOT / "tests" / "doubles" / "fleets").glob("*.yaml"))
SYNTHETIC = (
    ("syn-plain", 1, 12, 150, Shape()),
    ("syn-hot", 2, 16, 300, Shape(hot_node_fill=0.95, hot_share=0.2, split_affinity=True)),
    ("syn-mixed", 3, 14, 200, Shape(openvz_share=0.3, offline_share=0.1, disk_fill=0.8,
                                    node_memory_mb=(65536, 131072, 262144))),
    ("syn-over", 4, 10, 260, Shape(fill=0.97, hot_node_fill=1.1, hot_share=0.3)),
)


def fleets() -> Iterator[tuple[str, Inventory]]:
    for path in FLEET_FILES:
        yield path.stem, load_inventory(path)
    for name, seed, nodes, cts, shape in SYNTHETIC:
        yield name, synthetic_fleet(seed, nodes, cts, shape)


def plans(inv: Inventory, exact: bool) -> Iterator[tuple[str, Callable[[], Any]]]:
    """The goals planned for one fleet; ``exact`` adds the CP-SAT variants (small fleets)."""
    names = [n.name for n in inv.nodes]
    for level in (1, 3, 5):
        policy = Policy(aggressiveness=level)
        yield f"rebalance-a{level}", lambda p=policy: plan_rebalance(inv, p)
    yield "rebalance-max5", lambda: plan_rebalance(inv, Policy(max_moves=5, aggressiveness=5))
    yield "evacuate", lambda: plan_evacuate(inv, names[:1], Policy())
    yield "drain", lambda: plan_drain(inv, names[1:3], Policy())
    yield "place", lambda: place(inv, Policy(), cpus=4, memory_mb=8192, disk_gb=80)
    if exact:
        yield "rebalance-cpsat", lambda: plan_rebalance(inv, Policy(), solver="cp-sat", time_limit_s=2.0)
        yield "evacuate-cpsat", lambda: plan_evacuate(inv, names[:1], Policy(), solver="cp-sat",
                                                      time_limit_s=2.0)


def decisions(result: Any) -> Any:
    """What a plan decides, without figures that only describe it."""
    data = result.to_dict() if hasattr(result, "to_dict") else result.model_dump(mode="json")
    if "moves" not in data:
        return data
    keys = ("ct", "from_node", "from", "to", "wave", "after", "reason", "target_storage")
    return {"moves": [{k: m[k] for k in keys if k in m} for m in data["moves"]],
            "unplaced": data.get("unplaced", [])}


def digest(result: Any) -> str:
    return hashlib.sha256(json.dumps(decisions(result), sort_keys=True).encode()).hexdigest()[:16]


def all_cases() -> Iterator[tuple[str, Callable[[], Any]]]:
    for fname, inv in fleets():
        small = len(inv.containers) <= 200
        for goal, make in plans(inv, exact=small):
            yield f"{fname}/{goal}", make


if __name__ == "__main__":
    out = {}
    for name, make in all_cases():
        result = make()
        out[name] = result.to_dict() if hasattr(result, "to_dict") else result.model_dump(mode="json")
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1, sort_keys=True))
