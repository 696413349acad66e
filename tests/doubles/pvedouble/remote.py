"""Remote migration between two doubles, each one cluster: pve-container's ``remote_migrate_vm``
(src/PVE/API2/LXC.pm, ``POST /nodes/{node}/lxc/{vmid}/remote_migrate``, EXPERIMENTAL upstream;
CLI ``pct remote-migrate``) and the source side of src/PVE/LXC/Migrate.pm, reduced.

    POST .../remote_migrate {target-endpoint, target-storage, target-bridge, [target-vmid,
                             restart, online, delete, bwlimit, timeout]}
      synchronous, as LXC.pm checks before fork_worker (each failure an HTTP error, PVE's words):
        node older than 7.3 ---------------> 501 Method '...' not implemented (no such route)
        CT locked / running w/o restart ----> 500 "CT is locked (..)" / "can't migrate running
                                              container without --online or --restart"
        HA-managed ------------------------> 400 {vmid: cannot migrate HA-managed CT to remote cluster}
        storage map "1" (identity) --------> 500 remote migration requires explicit storage mapping!
        the remote, over real HTTPS with the endpoint's API token, its certificate pinned to the
        endpoint's fingerprint: GET /cluster/status -> the target node (the entry with local=1)
      -> UPID of a ``vzmigrate`` task on the source node; the source is stopped and locked
         ``migrate`` while it runs
    task end (Migrate.pm phase1 -> phase3 -> final_cleanup, remote branch):
        the remote world gets the CT under target-vmid on its node, rootfs on the mapped storage,
        bridges mapped (map_bridges), started if it ran (restart); one ``POST
        /nodes/{node}/lxc/{vmid}/mtunnel`` appears in the remote's request log (the tunnel)
        source: kept stopped with ``lock: migrate`` (final_cleanup clears the lock on the remote
        only), or destroyed with ``delete=1``
        a failure (target VMID taken, storage missing) ends the task with an error; the source
        is unlocked and started again if it ran (final_cleanup, conf not migrated)
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import json
import re
import ssl
import time
from typing import Any

from tests.doubles.pvedouble.guests import parse_storage_map
from tests.doubles.pvedouble.model import ApiError, Guest, TaskFailed
from tests.doubles.pvedouble.world import SIM_SHUTDOWN_S, SIM_START_S, World, capped

#: (host, port) -> the world a running double serves there (server.py keeps it).
SERVED: dict[tuple[str, int], World] = {}
#: The first Proxmox VE release with remote migration (``qm/pct remote-migrate``, 7.3).
FIRST_VERSION = (7, 3)


def offers_remote_migrate(version: str | None) -> bool:
    found = re.match(r"(\d+)\.(\d+)", version or "8.3.1")
    return found is not None and (int(found[1]), int(found[2])) >= FIRST_VERSION


def parse_endpoint(value: str) -> dict[str, str]:
    """``proxmox-remote`` (pve-common PVE::JSONSchema): apitoken=..,host=..[,port=..][,fingerprint=..]."""
    props: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        if not sep:
            raise ApiError(400, "Parameter verification failed.", {"target-endpoint": f"invalid format - {part!r}"})
        props[key] = val
    missing = [k for k in ("apitoken", "host") if k not in props]
    if missing:
        raise ApiError(400, "Parameter verification failed.",
                       {"target-endpoint": f"invalid format - property '{missing[0]}' is missing"})
    return props


def fingerprint_of(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def remote_local_node(endpoint: dict[str, str]) -> tuple[World, str]:
    """GET /cluster/status on the remote over HTTPS (PVE::APIClient::LWP with the endpoint's API
    token; the certificate pinned to ``fingerprint``); its world and the node marked local."""
    host, port = endpoint["host"], int(endpoint.get("port", 8006))
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # pinned below instead
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=5)
    try:
        conn.connect()
        seen = fingerprint_of(conn.sock.getpeercert(binary_form=True))
        want = endpoint.get("fingerprint", "").upper()
        if want and want != seen:
            raise ApiError(500, f"Establishing API connection with remote at '{host}' failed: "
                                f"fingerprint '{seen}' not verified, abort!")
        conn.request("GET", "/api2/json/cluster/status", headers={"Authorization": endpoint["apitoken"]})
        reply = conn.getresponse()
        body = reply.read()
    except OSError as exc:
        raise ApiError(500, f"Establishing API connection with remote at '{host}' failed: {exc}") from None
    finally:
        conn.close()
    if reply.status != 200:
        raise ApiError(500, f"{reply.status} {reply.reason}")
    local = [e["name"] for e in json.loads(body)["data"] if e.get("type") == "node" and e.get("local")]
    if not local:
        raise ApiError(500, "couldn't determine endpoint's node name")
    return SERVED[(host, port)], local[0]


def map_bridges(nets: dict[str, str], bridge_map: str) -> dict[str, str]:
    """Migrate.pm map_bridges: each net's ``bridge`` through the map ("1": itself)."""
    pairs, default = parse_storage_map(bridge_map)
    out = {}
    for key, net in nets.items():
        parts = []
        for item in net.split(","):
            if item.startswith("bridge="):
                bridge = item[len("bridge="):]
                item = f"bridge={pairs.get(bridge, default or bridge)}"
            parts.append(item)
        out[key] = ",".join(parts)
    return out


def remote_migrate(world: World, node: str, vmid: int, p: dict[str, Any], user: str) -> str:
    """The synchronous half (module doc); returns the UPID of the migration task."""
    if not offers_remote_migrate(world.node(node).version):
        raise ApiError(501, f"Method 'POST /nodes/{node}/lxc/{vmid}/remote_migrate' not implemented")
    guest = world.guest_on(node, vmid)
    world.check_lock(guest)
    if guest.status == "running" and not p.get("online") and not p.get("restart"):
        raise ApiError(500, "can't migrate running container without --online or --restart")
    if f"ct:{vmid}" in world.ha:
        raise ApiError(400, "Parameter verification failed.", {"vmid": "cannot migrate HA-managed CT to remote cluster"})
    endpoint = parse_endpoint(p["target-endpoint"])
    pairs, default = parse_storage_map(p["target-storage"])
    if not pairs and default is None:
        raise ApiError(500, "remote migration requires explicit storage mapping!")
    remote, target = remote_local_node(endpoint)
    dest = int(p.get("target-vmid", vmid))
    if guest.status == "running" and p.get("online") and not p.get("restart"):
        task = world.start_task(node, "vzmigrate", vmid, 0.2, user=user)
        task.fail_with = "lxc live migration is currently not implemented"
        return task.upid
    return _start(world, guest, remote, target, dest, storage=pairs.get(guest.storage, default or guest.storage),
                  bridges=p["target-bridge"], p=p, user=user)


def _start(world: World, guest: Guest, remote: World, target: str, dest: int, *, storage: str, bridges: str,
           p: dict[str, Any], user: str) -> str:
    was_running = guest.status == "running"
    sim = guest.disk_used / capped(world.link_bytes_s, p.get("bwlimit")) + (
        (SIM_SHUTDOWN_S + SIM_START_S) if was_running else 0.5)
    log = ["Establishing API connection with remote at '{}'".format(p["target-endpoint"].split("host=")[1].split(",")[0]),
           f"{time.strftime('%F %T')} starting migration of CT {guest.vmid} to node '{target}'"]
    guest.status, guest.lock = "stopped", "migrate"

    def arrive() -> None:
        with remote.lock:
            remote.node(target)
            if dest in remote.guests:
                raise TaskFailed(f"mtunnel: Target VMID {dest} already exists on the remote cluster")
            if storage not in remote.nodes[target].storages:
                raise TaskFailed(f"mtunnel: storage '{storage}' does not exist on node '{target}'")
            copy_ = copy.deepcopy(guest)
            copy_.vmid, copy_.node, copy_.storage, copy_.lock = dest, target, storage, None
            copy_.nets = map_bridges(guest.nets, bridges)
            copy_.status = "running" if was_running and p.get("restart") else "stopped"
            remote.guests[dest] = copy_
            remote.nodes[target].storages[storage].used += guest.maxdisk
            remote.log_request("POST", f"/nodes/{target}/lxc/{dest}/mtunnel", 200, {"bridges": bridges,
                                                                                      "storages": storage})
            remote.note_states(time.monotonic())
        if p.get("delete"):
            world.nodes[guest.node].storages[guest.storage].used -= guest.maxdisk
            world.guests.pop(guest.vmid, None)

    def fail(_text: str) -> None:
        guest.lock = None
        guest.status = "running" if was_running else "stopped"

    return world.start_task(guest.node, "vzmigrate", guest.vmid, sim, user=user, log=log,
                            on_success=arrive, on_failure=fail).upid


def cluster_status(world: World) -> list[dict[str, Any]]:
    """pve-manager PVE/API2/ClusterConfig.pm / Cluster.pm ``status``: the cluster entry and one
    entry per node; ``local`` marks the node answering (``world.local_node``)."""
    rows: list[dict[str, Any]] = [{"type": "cluster", "id": "cluster", "name": world.cluster_name,
                                   "nodes": len(world.nodes), "quorate": 1, "version": 3}]
    for i, n in enumerate(world.nodes.values(), start=1):
        rows.append({"type": "node", "id": f"node/{n.name}", "name": n.name, "nodeid": i, "ip": "127.0.0.1",
                     "online": int(n.online), "local": int(n.name == (world.local_node or next(iter(world.nodes)))), "level": ""})
    return rows
