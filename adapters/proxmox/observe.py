"""Reading the cluster: where a container is, what it looks like, which task works on it.

Everything here is a GET, so every step can call it first and act only on what is missing.
Endpoints (pve-docs api-viewer):
- GET /cluster/resources (type=vm|node|storage): guests with node, status, maxmem/mem (bytes),
  maxcpu, cpu (fraction), maxdisk/disk (bytes), tags (';'-separated), lock, hastate.
- GET /nodes/{node}/lxc/{vmid}/config: rootfs ("storage:volume,size=8G"), net[n]
  ("name=eth0,bridge=vmbr0,ip=203.0.113.10/24,gw=..."), tags, lock.
- GET /cluster/tasks: recent tasks of the whole cluster (upid, type, id, status once ended).
- GET /cluster/ha/resources and /cluster/ha/status/current (sid "ct:101", node, state).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from adapters.proxmox.client import Api

_TAG_SPLIT = re.compile(r"[;, ]+")


def split_tags(value: str | None) -> list[str]:
    """Proxmox stores tags ';'-separated (pve-common PVE::GuestHelpers; ',' and ' ' are accepted)."""
    return [t for t in _TAG_SPLIT.split(value or "") if t]


def parse_property_string(value: str) -> dict[str, str]:
    """``name=eth0,bridge=vmbr0,ip=1.2.3.4/24`` -> dict (PVE::JSONSchema::parse_property_string)."""
    out: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        if sep:
            out[key.strip()] = val.strip()
    return out


def render_property_string(props: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in props.items())


def config_ips(config: dict[str, Any]) -> list[str]:
    """Static addresses of every net[n], without the CIDR suffix, net0 first."""
    ips: list[str] = []
    keys = sorted((k for k in config if re.fullmatch(r"net\d+", k)), key=lambda k: int(k[3:]))
    for key in keys:
        props = parse_property_string(str(config[key]))
        for field in ("ip", "ip6"):
            addr = props.get(field)
            if addr and addr not in ("dhcp", "manual", "auto"):
                ips.append(addr.split("/")[0])
    return ips


def rootfs_storage(config: dict[str, Any]) -> str | None:
    rootfs = str(config.get("rootfs", ""))
    return rootfs.split(":", 1)[0] if ":" in rootfs else None


@dataclass(frozen=True)
class Placement:
    """One container as /cluster/resources lists it."""

    vmid: int
    node: str
    status: str
    lock: str | None
    tags: tuple[str, ...]
    row: dict[str, Any]


def guests(api: Api) -> dict[int, Placement]:
    rows = api.get("/cluster/resources", type="vm")
    out = {}
    for row in rows:
        if row.get("type") != "lxc" or row.get("template"):
            continue
        out[int(row["vmid"])] = Placement(int(row["vmid"]), row["node"], row.get("status", "unknown"),
                                          row.get("lock") or None, tuple(split_tags(row.get("tags"))), row)
    return out


def locate(api: Api, vmid: int) -> Placement | None:
    return guests(api).get(vmid)


def find_tagged(api: Api, tag: str) -> Placement | None:
    """The container carrying ``tag`` (ferry's marker on a restored copy), if any."""
    for place in guests(api).values():
        if tag in place.tags:
            return place
    return None


def config(api: Api, node: str, vmid: int) -> dict[str, Any]:
    return api.get(f"/nodes/{node}/lxc/{vmid}/config")


def active_task(api: Api, vmid: int, types: tuple[str, ...], since: int = 0) -> str | None:
    """UPID of a still-running task of one of ``types`` for ``vmid`` (rows without ``endtime``)."""
    for row in api.get("/cluster/tasks"):
        if (row.get("type") in types and str(row.get("id")) == str(vmid) and "endtime" not in row
                and int(row.get("starttime", 0)) >= since):
            return row["upid"]
    return None


def latest_task(api: Api, vmid: int, types: tuple[str, ...], since: int) -> dict[str, Any] | None:
    """The newest task of ``types`` for ``vmid`` started at or after ``since`` (epoch seconds)."""
    rows = [r for r in api.get("/cluster/tasks")
            if r.get("type") in types and str(r.get("id")) == str(vmid) and int(r.get("starttime", 0)) >= since]
    return max(rows, key=lambda r: int(r["starttime"])) if rows else None


def ha_sids(api: Api) -> set[str]:
    return {row["sid"] for row in api.get("/cluster/ha/resources")}


def ha_service(api: Api, vmid: int) -> dict[str, Any] | None:
    for row in api.get("/cluster/ha/status/current"):
        if row.get("sid") == f"ct:{vmid}":
            return row
    return None


def node_states(api: Api) -> dict[str, str]:
    """Per node: "online" | "maintenance" | other, from the HA manager status (pve-ha-manager
    puts a node in "maintenance" during ``ha-manager crm-command node-maintenance enable``). A
    node whose maintenance was requested (``node_request``) and not yet entered counts as in
    maintenance already: its LRM is about to move every HA service away, so it receives nothing."""
    manager = api.get("/cluster/ha/status/manager_status").get("manager_status") or {}
    states = {str(node): str(state) for node, state in dict(manager.get("node_status") or {}).items()}
    for node, request in dict(manager.get("node_request") or {}).items():
        if isinstance(request, dict) and request.get("maintenance"):
            states[str(node)] = "maintenance"
    return states
