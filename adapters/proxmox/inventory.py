"""discover(): the cluster as a ferry snapshot (contracts/inventory.md).

    /cluster/resources (nodes, storages, lxc) --+
    /cluster/ha/resources, manager_status -------+--> Inventory (MiB, GiB, fractions)
    /nodes/{node}/status, /nodes/{n}/lxc/{id}/config

Units: the API gives memory and disk in bytes (maxmem, mem, maxdisk, disk), CPU load as a
fraction (cpu; of all node CPUs for a node, of the guest's maxcpu for a guest), maxcpu as a count,
and the container config gives memory in MiB. The snapshot wants memory in MiB and disk in GiB
(2^30 bytes, the unit of "size=8G" in a rootfs), rounded to 3 decimals so that the figures
survive a round trip through JSON unchanged. A container's ``disk_gb`` is its rootfs size
(maxdisk): what it may grow to on the destination.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from adapters.base import PermanentError, TransientError
from adapters.proxmox import observe
from adapters.proxmox.client import Api
from adapters.reported import reported, shown_text, shown_texts
from fleet.model import Container, Inventory, Node, Storage

MIB = 1 << 20
GIB = 1 << 30


def _fraction(value: Any) -> float:
    return min(1.0, max(0.0, float(value or 0.0)))


def _gib(value: Any) -> float:
    return round(int(value or 0) / GIB, 3)


def _node_versions(api: Api, node: str) -> tuple[str | None, str | None]:
    """Kernel release and pve-manager version from GET /nodes/{node}/status."""
    try:
        status = api.get(f"/nodes/{node}/status")
    except (PermanentError, TransientError):
        return None, None
    kernel = (status.get("current-kernel") or {}).get("release")
    if not kernel and status.get("kversion"):
        parts = str(status["kversion"]).split()
        kernel = parts[1] if len(parts) > 1 else None
    pve = str(status.get("pveversion") or "")
    version = pve.split("/")[1] if pve.startswith("pve-manager/") and pve.count("/") >= 1 else None
    return kernel, version


def _nodes(api: Api, rows: list[dict[str, Any]], states: dict[str, str]) -> list[Node]:
    storages: dict[str, dict[str, Storage]] = {}
    for row in rows:
        if row.get("type") == "storage" and row.get("status", "available") == "available":
            storages.setdefault(row["node"], {})[row["storage"]] = Storage(
                total_gb=_gib(row.get("maxdisk")), used_gb=_gib(row.get("disk")), shared=bool(row.get("shared")))
    nodes = []
    for row in sorted((r for r in rows if r.get("type") == "node"), key=lambda r: r["node"]):
        online = row.get("status") == "online"
        kernel, version = _node_versions(api, row["node"]) if online else (None, None)
        nodes.append(Node(name=row["node"], platform="proxmox", cpus=max(1, int(row.get("maxcpu") or 1)),
                          memory_mb=max(1, round(int(row.get("maxmem") or MIB) / MIB)),
                          cpu_usage=_fraction(row.get("cpu")), storage=storages.get(row["node"], {}),
                          online=online, maintenance=states.get(row["node"]) == "maintenance",
                          kernel=kernel, version=version))
    return nodes


def _known_status(status: str | None) -> str:
    """A guest of a node that is down is listed as ``unknown``: the snapshot says stopped."""
    return status if status in ("running", "stopped", "paused", "suspended") else "stopped"


def _container(api: Api, row: dict[str, Any], ha: set[str], down: set[str]) -> Container:
    vmid, node = int(row["vmid"]), row["node"]
    # A down node's configs cannot be read (the API proxies to the node): its row must do.
    conf = {} if node in down else observe.config(api, node, vmid)
    running = row.get("status") == "running"
    extra = {"lock": conf["lock"]} if conf.get("lock") else {}
    return reported(Container, dict(
        id=str(vmid), node=node, name=shown_text(row.get("name") or conf.get("hostname")),
        status=_known_status(row.get("status")),
        cpus=float(row.get("maxcpu") or conf.get("cores") or 1), cpu_usage=_fraction(row.get("cpu")) if running else 0.0,
        memory_mb=round(int(row.get("maxmem") or 0) / MIB) or int(conf.get("memory", 0)),
        memory_used_mb=round(int(row.get("mem") or 0) / MIB) if running else 0,
        disk_gb=_gib(row.get("maxdisk")), storage=observe.rootfs_storage(conf), ips=observe.config_ips(conf),
        tags=shown_texts(observe.split_tags(conf.get("tags") or row.get("tags"))), ha=f"ct:{vmid}" in ha,
        **extra), where=f"container {vmid} on {node}")


def discover(api: Api) -> Inventory:
    rows = api.get("/cluster/resources")
    states = observe.node_states(api)
    ha = observe.ha_sids(api)
    cts = sorted((r for r in rows if r.get("type") == "lxc" and not r.get("template")), key=lambda r: int(r["vmid"]))
    down = {r["node"] for r in rows if r.get("type") == "node" and r.get("status") != "online"}
    return Inventory(taken_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     nodes=_nodes(api, rows, states), containers=[_container(api, r, ha, down) for r in cts])
