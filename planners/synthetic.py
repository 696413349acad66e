"""Seeded synthetic fleets for the planner's benchmarks and property tests.

``synthetic_fleet(seed, nodes, containers)`` builds a valid snapshot (``contracts/inventory.md``)
that looks like a VPS provider's cluster: VPS-plan memory sizes, local and shared storage,
affinity pairs, anti-affinity groups spread over distinct nodes, pinned and ``pin_to``
containers. The same arguments always give the same snapshot (``random.Random(seed)``), so a
benchmark figure can be reproduced from its command line.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from fleet.model import Inventory

#: VPS plan sizes (MiB) and how common each is.
MEMORY_SIZES = (512, 1024, 2048, 4096, 8192, 16384)
MEMORY_WEIGHTS = (2, 4, 5, 4, 2, 1)


@dataclass(frozen=True)
class Shape:
    """Knobs of a synthetic fleet; the defaults give a plain, healthy, uniform cluster."""

    node_memory_mb: tuple[int, ...] = (131072,)
    fill: float = 0.65  # target configured-memory fraction before the planner runs
    hot_node_fill: float | None = None  # fill of the hot nodes (an imbalance to fix), if set
    hot_share: float = 0.0  # fraction of nodes that are hot; node 0 always is when hot_node_fill is set
    rules: bool = True
    openvz_share: float = 0.0  # fraction of nodes on OpenVZ
    offline_share: float = 0.0  # fraction of nodes offline or in maintenance
    shared_storage: bool = True
    split_affinity: bool = False  # leave affinity pairs on different nodes (a violation to fix)
    memory_sizes: tuple[int, ...] = MEMORY_SIZES  # VPS plan sizes (MiB) ...
    memory_weights: tuple[int, ...] = MEMORY_WEIGHTS  # ... and how common each is
    anti_affinity_share: float | None = None  # fraction of containers in anti-affinity triples (None: 15 %)
    disk_fill: float | None = None  # local storage sized so each node's is this full (None: 4000 GB)


def _nodes(rng: random.Random, count: int, shape: Shape) -> list[dict[str, Any]]:
    nodes = []
    for i in range(count):
        openvz = rng.random() < shape.openvz_share
        down = i > 0 and rng.random() < shape.offline_share
        storage: dict[str, Any] = {"local": {"total_gb": 4000.0, "used_gb": 0.0, "shared": False}}
        if shape.shared_storage:
            storage["ceph"] = {"total_gb": 100000.0, "used_gb": 0.0, "shared": True}
        nodes.append({
            "name": f"node{i:03d}", "platform": "openvz" if openvz else "proxmox",
            "cpus": rng.choice((48, 64)), "memory_mb": rng.choice(shape.node_memory_mb),
            "cpu_usage": 0.0, "storage": storage,
            "online": not (down and rng.random() < 0.5), "maintenance": down,
            "kernel": "6.8.12-4-pve" if not openvz else "2.6.32-042stab145.3",
            "version": "8.3.1" if not openvz else "7.0.0",
        })
    return nodes


def _containers(rng: random.Random, nodes: list[dict[str, Any]], count: int,
                shape: Shape) -> list[dict[str, Any]]:
    load = {n["name"]: 0.0 for n in nodes}
    hot = max(1, int(shape.hot_share * len(nodes)))
    out = []
    for i in range(count):
        mem = rng.choices(shape.memory_sizes, shape.memory_weights)[0]
        order = list(range(len(nodes)))
        rng.shuffle(order)
        fill = [shape.hot_node_fill if (j < hot and shape.hot_node_fill) else shape.fill for j in order]
        node = next((nodes[j] for j, f in zip(order, fill, strict=True)
                     if load[nodes[j]["name"]] + mem <= f * nodes[j]["memory_mb"]),
                    min(nodes, key=lambda n: load[n["name"]] / n["memory_mb"]))
        load[node["name"]] += mem
        sid = "ceph" if shape.shared_storage and rng.random() < 0.3 else "local"
        disk = float(rng.choice((10, 20, 40, 80, 160)))
        node["storage"][sid]["used_gb"] += disk
        out.append({
            "id": str(1000 + i), "node": node["name"], "status": "running" if rng.random() < 0.85 else "stopped",
            "cpus": float(rng.choice((1, 1, 2, 4))), "cpu_usage": round(rng.random() * 0.6, 3),
            "memory_mb": mem, "memory_used_mb": mem // 2, "disk_gb": disk, "storage": sid,
            "dirty_mb_per_s": round(rng.random() * 5, 2),
        })
    return out


def _rules(rng: random.Random, nodes: list[dict[str, Any]], cts: list[dict[str, Any]],
           fill: float, split: bool, anti_share: float | None) -> dict[str, Any]:
    ids = [c["id"] for c in cts]
    rng.shuffle(ids)
    by_id = {c["id"]: c for c in cts}
    k = max(1, len(ids) // 20)
    affinity, anti = [], []
    pool = ids[: 2 * k]
    load: dict[str, float] = {}
    for c in cts:
        load[c["node"]] = load.get(c["node"], 0.0) + c["memory_mb"]
    size = {n["name"]: n["memory_mb"] for n in nodes}
    for a, b in zip(pool[::2], pool[1::2], strict=False):
        home, other = by_id[a]["node"], by_id[b]["node"]
        if split:
            affinity.append([a, b])
            continue
        if home != other and load[home] + by_id[b]["memory_mb"] > fill * size[home]:
            continue  # joining would overfill a's node: leave this pair out of the rules
        load[home] += by_id[b]["memory_mb"]
        load[other] -= by_id[b]["memory_mb"]
        by_id[b]["node"] = home  # a healthy snapshot keeps affinity pairs together
        affinity.append([a, b])
    rest = ids[2 * k:]
    used: set[str] = set()
    triples = k if anti_share is None else max(1, int(anti_share * len(ids) / 3))
    for start in range(0, min(len(rest), 3 * triples), 3):
        group = [ct for ct in rest[start:start + 3]]
        if len({by_id[ct]["node"] for ct in group}) == len(group):
            anti.append(group)
            used.update(group)
    others = [ct for ct in rest if ct not in used]
    pinned = others[:k]
    names = [n["name"] for n in nodes]
    pin_to = {ct: sorted({by_id[ct]["node"], rng.choice(names)}) for ct in others[k:2 * k]}
    return {"affinity": affinity, "anti_affinity": anti, "pinned": pinned, "pin_to": pin_to}


def _recount(nodes: list[dict[str, Any]], cts: list[dict[str, Any]], disk_fill: float | None) -> None:
    """Storage use follows the final placement (affinity pairs were moved together); with
    ``disk_fill`` each node's local storage is sized so that it is that full."""
    by_name = {n["name"]: n for n in nodes}
    for n in nodes:
        for st in n["storage"].values():
            st["used_gb"] = 0.0
    for c in cts:
        by_name[c["node"]]["storage"][c["storage"]]["used_gb"] += c["disk_gb"]
    if disk_fill is not None:
        for n in nodes:
            local = n["storage"]["local"]
            local["total_gb"] = float(round(max(local["used_gb"], 100.0) / disk_fill))
    shared = sum(c["disk_gb"] for c in cts if c["storage"] == "ceph")
    for n in nodes:
        if "ceph" in n["storage"]:
            n["storage"]["ceph"]["used_gb"] = shared
            n["storage"]["ceph"]["total_gb"] = max(100000.0, 2 * shared)


def synthetic_fleet(seed: int, nodes: int, containers: int, shape: Shape | None = None) -> Inventory:
    """A reproducible snapshot of ``nodes`` nodes and ``containers`` containers (module docstring)."""
    shape = shape or Shape()
    rng = random.Random(seed)
    node_list = _nodes(rng, nodes, shape)
    cts = _containers(rng, node_list, containers, shape)
    rules = (_rules(rng, node_list, cts, max(shape.fill, shape.hot_node_fill or 0.0), shape.split_affinity,
                    shape.anti_affinity_share) if shape.rules else {})
    _recount(node_list, cts, shape.disk_fill)
    return Inventory.model_validate({"version": 1, "taken_at": "2026-11-22T03:00:00Z",
                                     "nodes": node_list, "containers": cts, "rules": rules})


def with_big_node(inv: Inventory, count: int, node_index: int = 1) -> Inventory:
    """``inv`` with one node holding ``count`` containers (an OpenVZ-style host of hundreds of
    small VPS): unruled containers of at most 2 GiB on shared storage join it, and its RAM and
    CPUs grow so that it stays at 90 % of its memory. The first unruled ones by id join, so the
    same arguments always give the same snapshot."""
    data = inv.model_dump(mode="json")
    rules = data["rules"]
    ruled = {ct for group in rules["affinity"] + rules["anti_affinity"] for ct in group}
    ruled.update(rules["pinned"], rules["pin_to"])
    node = data["nodes"][node_index]
    held = [c for c in data["containers"] if c["node"] == node["name"]]
    for c in data["containers"]:
        if len(held) >= count:
            break
        if (c["node"] != node["name"] and c["id"] not in ruled and c["memory_mb"] <= 2048
                and c["storage"] == "ceph"):
            c["node"] = node["name"]
            held.append(c)
    node["memory_mb"] = int(sum(c["memory_mb"] for c in held) / 0.9)
    node["cpus"] = max(node["cpus"], int(sum(c["cpus"] for c in held)))
    return Inventory.model_validate(data)
