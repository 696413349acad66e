"""Container operations of the double, after pve-container's src/PVE/API2/LXC.pm,
LXC/Status.pm and LXC/Migrate.pm: what each call checks synchronously (answered as an HTTP error)
and what it does later inside its task (ending the task with an error text).
"""

from __future__ import annotations

import time
from typing import Any

from tests.doubles.pvedouble import cluster
from tests.doubles.pvedouble.model import MIB, ApiError, Guest, TaskFailed
from tests.doubles.pvedouble.world import SIM_SHUTDOWN_S, SIM_START_S, World, capped


def parse_storage_map(value: str | None) -> tuple[dict[str, str], str | None]:
    """pve-targetstorage: ``src:dst`` pairs and at most one bare default, comma separated
    (PVE::JSONSchema::parse_idmap)."""
    pairs: dict[str, str] = {}
    default = None
    for item in (value or "").split(","):
        if not item:
            continue
        if ":" in item:
            src, dst = item.split(":", 1)
            pairs[src] = dst
        elif item == "1":
            default = None
        else:
            default = item
    return pairs, default


def _copy_bytes(world: World, guest: Guest, target: str, dst_storage: str) -> int:
    source_storage = world.nodes[guest.node].storages[guest.storage]
    if source_storage.shared and dst_storage == guest.storage:
        return 0
    replica = cluster.replica_at(world, guest.vmid, target)
    if replica is not None and dst_storage == guest.storage:
        # Migrate.pm runs a last replication: only what changed since the replicated snapshot.
        return guest.changed_since(replica, world.sim_time())
    return guest.disk_used


def move_volume_accounting(world: World, guest: Guest, target: str, dst_storage: str) -> None:
    src = world.nodes[guest.node].storages[guest.storage]
    dst = world.nodes[target].storages[dst_storage]
    if src is not dst:
        src.used = max(0, src.used - guest.maxdisk)
        dst.used += guest.maxdisk


def begin_migration(world: World, guest: Guest, target: str, *, restart: bool, storage_map: str | None,
                    bwlimit_kib: float | None, user: str, on_end: Any = None) -> str:
    """Start a ``vzmigrate`` task; at its end the CT's config lives on ``target``."""
    if target not in world.nodes:
        raise ApiError(500, f"no such cluster node '{target}'")
    pairs, default = parse_storage_map(storage_map)
    dst_storage = pairs.get(guest.storage, default or guest.storage)
    if dst_storage not in world.nodes[target].storages:
        raise ApiError(500, f"storage '{dst_storage}' is not available on node '{target}'")
    source = guest.node
    was_running = guest.status == "running"
    copy = _copy_bytes(world, guest, target, dst_storage)
    speed = capped(world.link_bytes_s, bwlimit_kib)
    sim = copy / speed + ((SIM_SHUTDOWN_S + SIM_START_S) if was_running else 0.5)
    log = [f"{time.strftime('%F %T')} starting migration of CT {guest.vmid} to node '{target}'"]
    prior_lock = guest.lock

    def succeed() -> None:
        if not world.nodes[target].online:
            raise TaskFailed(f"migration aborted: node '{target}' is offline")
        move_volume_accounting(world, guest, target, dst_storage)
        guest.node, guest.storage, guest.lock = target, dst_storage, None
        guest.status = "running" if was_running else "stopped"
        if on_end:
            on_end(True)

    def fail(_text: str) -> None:
        guest.lock = None
        guest.status = "running" if was_running else "stopped"
        if on_end:
            on_end(False)

    if prior_lock:
        task = world.start_task(source, "vzmigrate", guest.vmid, 0.2, user=user, log=log)
        task.fail_with = f"CT is locked ({prior_lock})"
        return task.upid
    if was_running and restart:
        guest.status = "stopped"
    guest.lock = "migrate"
    log.append(f"copying {copy // MIB} MiB of volume data")
    task = world.start_task(source, "vzmigrate", guest.vmid, sim, user=user, log=log,
                            on_success=succeed, on_failure=fail)
    return task.upid


def migrate(world: World, node: str, vmid: int, p: dict[str, Any], user: str) -> str:
    guest = world.guest_on(node, vmid)
    target = p["target"]
    if target == node:
        raise ApiError(400, "Parameter verification failed.", {"target": "target is local node."})
    world.node(target)
    if guest.status == "running" and not p.get("online") and not p.get("restart"):
        raise ApiError(500, "can't migrate running container without --online or --restart")
    if f"ct:{vmid}" in world.ha:
        def forward() -> None:
            cluster.request_ha(world, f"ct:{vmid}", "migrate", target)

        return world.start_task(node, "hamigrate", vmid, 0.5, user=user, on_success=forward,
                                log=[f"Requesting HA migration for CT {vmid} to node {target}"]).upid
    if guest.status == "running" and p.get("online") and not p.get("restart"):
        task = world.start_task(node, "vzmigrate", vmid, 0.2, user=user)
        task.fail_with = "lxc live migration is currently not implemented"
        return task.upid
    return begin_migration(world, guest, target, restart=bool(p.get("restart")),
                           storage_map=p.get("target-storage"), bwlimit_kib=p.get("bwlimit"), user=user)


def precondition(world: World, node: str, vmid: int, p: dict[str, Any]) -> dict[str, Any]:
    guest = world.guest_on(node, vmid)
    world.check_lock(guest)
    allowed = [n for n in world.nodes if n != node]
    out: dict[str, Any] = {"running": 1 if guest.status == "running" else 0, "allowed-nodes": allowed,
                           "not-allowed-nodes": {}}
    if f"ct:{vmid}" in world.ha:
        out["dependent-ha-resources"] = []
    return out


def status_current(world: World, node: str, vmid: int) -> dict[str, Any]:
    g = world.guest_on(node, vmid)
    out = {"vmid": g.vmid, "name": g.hostname, "status": g.status, "type": "lxc", "maxmem": g.memory_mib * MIB,
           "mem": g.mem_used if g.status == "running" else 0, "maxcpu": g.cores,
           "cpu": g.cpu if g.status == "running" else 0, "maxdisk": g.maxdisk, "disk": g.disk_used,
           "uptime": 1000 if g.status == "running" else 0, "tags": ";".join(g.tags)}
    if g.lock:
        out["lock"] = g.lock
    if f"ct:{vmid}" in world.ha:
        out["ha"] = {"managed": 1, "state": world.ha[f"ct:{vmid}"].state}
    else:
        out["ha"] = {"managed": 0}
    return out


def set_power(world: World, node: str, vmid: int, action: str, user: str) -> str:
    """status/start|shutdown|stop. HA-managed guests go through the HA stack (hastart/hastop)."""
    guest = world.guest_on(node, vmid)
    want = "running" if action == "start" else "stopped"
    sid = f"ct:{vmid}"
    if sid in world.ha:
        def ha_state() -> None:
            world.ha[sid].state = world.ha[sid].current = "started" if want == "running" else "stopped"
            guest.status = want

        kind = "hastart" if want == "running" else "hastop"
        return world.start_task(node, kind, vmid, 0.5, user=user, on_success=ha_state).upid
    if action == "start" and guest.status == "running":
        raise ApiError(500, "CT already running")
    world.check_lock(guest)

    def apply() -> None:
        guest.status = want

    kind = {"start": "vzstart", "shutdown": "vzshutdown", "stop": "vzstop"}[action]
    sim = SIM_START_S if action == "start" else SIM_SHUTDOWN_S
    return world.start_task(node, kind, vmid, sim, user=user, on_success=apply).upid


def put_config(world: World, node: str, vmid: int, p: dict[str, Any]) -> None:
    guest = world.guest_on(node, vmid)
    world.check_lock(guest)
    for key, value in p.items():
        if key == "tags":
            guest.tags = [t for t in str(value).replace(",", ";").replace(" ", ";").split(";") if t]
        elif key == "hostname":
            guest.hostname = value
        elif key == "onboot":  # start at boot (pct set --onboot); kept with the config's extras
            guest.extra["onboot"] = int(value)
        elif key.startswith("net"):
            guest.nets[key] = value
        elif key == "delete":
            for name in str(value).split(","):
                guest.nets.pop(name, None)
                if name == "tags":
                    guest.tags = []


def destroy(world: World, node: str, vmid: int, user: str, *, purge: bool = False) -> str:
    """pve-container API2/LXC.pm destroy_vm: an HA-managed CT needs ``purge``; with ``purge`` the
    CT also leaves the replication jobs and the HA resources (remove_vmid_jobs,
    delete_service_from_config)."""
    guest = world.guest_on(node, vmid)
    world.check_lock(guest)
    if guest.status == "running":
        raise ApiError(500, f"CT {vmid} is running - destroy failed")
    if f"ct:{vmid}" in world.ha and not purge:
        raise ApiError(500, f"unable to remove CT {vmid} - used in HA resources and purge parameter not set.")

    def remove() -> None:
        world.nodes[guest.node].storages[guest.storage].used -= guest.maxdisk
        world.guests.pop(vmid, None)
        if purge:
            world.ha.pop(f"ct:{vmid}", None)
            for job_id in [j.id for j in world.replication.values() if j.guest == vmid]:
                world.replication.pop(job_id)

    return world.start_task(node, "vzdestroy", vmid, 1.0, user=user, on_success=remove).upid
