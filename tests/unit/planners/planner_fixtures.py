"""Tiny hand-made snapshots for planner tests: sizes in GiB, everything else defaulted."""

from __future__ import annotations

from typing import Any

from fleet import Inventory, parse_inventory

GIB = 1024


def node(name: str, mem_gib: float = 64, *, cpus: int = 16, platform: str = "proxmox",
         local_gb: float = 1000, shared: bool = False, **extra: Any) -> dict[str, Any]:
    storage = {"local": {"total_gb": local_gb, "used_gb": 0, "shared": False}}
    if shared:
        storage["ceph"] = {"total_gb": 10000, "used_gb": 0, "shared": True}
    return {"name": name, "platform": platform, "cpus": cpus, "memory_mb": int(mem_gib * GIB),
            "storage": storage, "kernel": "k1", "version": "8.3.1", **extra}


def ct(id_: str, on: str, mem_gib: float = 4, *, disk: float = 10, storage: str = "local",
       **extra: Any) -> dict[str, Any]:
    return {"id": id_, "node": on, "memory_mb": int(mem_gib * GIB), "cpus": 1, "disk_gb": disk,
            "storage": storage, **extra}


def fleet(nodes: list[dict[str, Any]], cts: list[dict[str, Any]], **rules: Any) -> Inventory:
    """A validated snapshot; storage used_gb follows the containers placed on it."""
    by_name = {n["name"]: n for n in nodes}
    for c in cts:
        st = by_name[c["node"]]["storage"].get(c.get("storage"))
        if st is not None and not st["shared"]:
            st["used_gb"] += c.get("disk_gb", 0)
    return parse_inventory({"version": 1, "nodes": nodes, "containers": cts, "rules": rules})


def apply_plan(inv: Inventory, plan: Any) -> Inventory:
    """The snapshot after executing ``plan`` (containers moved, local storage use updated)."""
    data = inv.model_dump(mode="json")
    by_id = {c["id"]: c for c in data["containers"]}
    nodes = {n["name"]: n for n in data["nodes"]}
    for m in plan.moves:
        c = by_id[m.ct]
        target = m.target_storage or c["storage"]
        old = nodes[c["node"]]["storage"].get(c["storage"])
        new = nodes[m.to]["storage"].get(target)
        if old is not None and not (old["shared"] and new and new["shared"] and target == c["storage"]):
            old["used_gb"] -= c["disk_gb"]
            new["used_gb"] += c["disk_gb"]
        c["node"], c["storage"] = m.to, target
    return parse_inventory(data)
