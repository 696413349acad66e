"""vzdump and restore in the double (pve-manager PVE/API2/VZDump.pm, pve-container's create_vm
with ``restore=1``): a backup is an archive volume on a storage with ``backup`` content; a restore
creates a new container from it, config overrides taken from the request."""

from __future__ import annotations

import copy
import tarfile
import time
from typing import Any

from tests.doubles.pvedouble.model import GIB, ApiError, Guest
from tests.doubles.pvedouble.world import SIM_SHUTDOWN_S, SIM_START_S, World, capped

BACKUP_BYTES_S = 400 * (1 << 20)


def vzdump(world: World, node: str, p: dict[str, Any], user: str) -> str:
    vmid = int(p["vmid"])
    guest = world.guest_on(node, vmid)
    storage_id = p.get("storage", "local")
    storage = world.nodes[node].storages.get(storage_id)
    if storage is None or "backup" not in storage.content:
        raise ApiError(500, f"storage '{storage_id}' does not support backups")
    world.check_lock(guest)
    mode = p.get("mode", "snapshot")
    was_running = guest.status == "running"
    stamp = time.strftime("%Y_%m_%d-%H_%M_%S")
    volid = f"{storage_id}:backup/vzdump-lxc-{vmid}-{stamp}.tar.zst"
    sim = guest.disk_used / capped(BACKUP_BYTES_S, p.get("bwlimit")) + ((SIM_SHUTDOWN_S + SIM_START_S) if mode == "stop" and was_running else 0)
    if mode == "stop" and was_running:
        guest.status = "stopped"
    guest.lock = "backup"

    def done() -> None:
        guest.lock = None
        if mode == "stop" and was_running:
            guest.status = "running"
        add_archive(world, guest, storage_id, volid, int(time.time()))

    def failed(_text: str) -> None:
        guest.lock = None
        if mode == "stop" and was_running:
            guest.status = "running"

    log = [f"INFO: starting new backup job: vzdump {vmid} --mode {mode} --storage {storage_id}",
           f"INFO: creating vzdump archive '{volid}'"]
    return world.start_task(node, "vzdump", vmid, sim, user=user, log=log, on_success=done,
                            on_failure=failed).upid


def add_archive(world: World, guest: Guest, storage_id: str, volid: str, ctime: int) -> None:
    """A content row (pve-storage ``list_volumes``: volid, ctime, size, format, vmid, subtype)
    holding the guest as it is now, which a restore brings back."""
    world.backups.setdefault(storage_id, []).append(
        {"volid": volid, "vmid": guest.vmid, "ctime": ctime, "size": guest.disk_used // 3,
         "format": "tar.zst", "content": "backup", "subtype": "lxc", "_guest": copy.deepcopy(guest)})


def content(world: World, node: str, storage_id: str, p: dict[str, Any]) -> list[dict[str, Any]]:
    storage = world.node(node).storages.get(storage_id)
    if storage is None:
        raise ApiError(500, f"storage '{storage_id}' does not exist")
    rows = world.backups.get(storage_id, [])
    if p.get("content") not in (None, "backup"):
        return []
    out = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    if "vmid" in p:
        out = [row for row in out if row["vmid"] == int(p["vmid"])]
    return out


def _find_backup(world: World, volid: str, p: dict[str, Any], node: str) -> dict[str, Any]:
    storage_id = volid.split(":", 1)[0]
    for row in world.backups.get(storage_id, []):
        if row["volid"] == volid:
            return row
    if storage_id in world.archive_dirs:
        return _foreign(world, volid, p, node)
    raise ApiError(500, f"volume '{volid}' does not exist")


#: Keys a restore request sets on the new container's config (pct restore options).
RESTORED_KEYS = ("ostype", "swap", "unprivileged", "onboot", "cpulimit", "nameserver", "searchdomain")


def _foreign(world: World, volid: str, p: dict[str, Any], node: str) -> dict[str, Any]:
    """A vzdump archive ferry did not make here (an OpenVZ one copied onto the storage): read
    from the file as pve-container does; an OpenVZ archive must hold ``etc/vzdump/vps.conf``
    (the OpenVZ config create_vm reads back); the new container is what the request says."""
    storage_id, _, name = volid.partition(":")
    path = world.archive_dirs[storage_id] / name.removeprefix("backup/")
    try:
        with tarfile.open(path) as tar:
            members = {m.lstrip("./") for m in tar.getnames()}
    except (OSError, tarfile.TarError):
        raise ApiError(500, f"volume '{volid}' does not exist") from None
    if "openvz" in name and "etc/vzdump/vps.conf" not in members:
        raise ApiError(500, f"unable to restore '{volid}' - no vps.conf in the archive")
    size_gib = int(str(p.get("rootfs", "x:8")).split(":")[1].split(",")[0])
    nets = {k: v for k, v in p.items() if k.startswith("net")}
    src = Guest(0, node, p.get("hostname"), "stopped", p.get("cores", 1), p.get("memory", 512), 0, 0.0,
                size_gib * GIB, str(p.get("rootfs", "local:8")).split(":")[0], nets, [],
                extra={"restored": {k: p[k] for k in RESTORED_KEYS if k in p}})
    if "onboot" in p:
        src.extra["onboot"] = p["onboot"]
    return {"volid": volid, "_guest": src, "_foreign": True}


def restore(world: World, node: str, p: dict[str, Any], user: str) -> str:
    """POST /nodes/{node}/lxc with restore=1: a new CT from an archive, under ``vmid``."""
    if not p.get("restore"):
        raise ApiError(501, "only restores are implemented by this double")
    vmid = int(p["vmid"])
    world.node(node)
    if vmid in world.guests and not p.get("force"):
        raise ApiError(500, f"CT {vmid} already exists on node '{world.guests[vmid].node}'")
    row = _find_backup(world, p["ostemplate"], p, node)
    storage_id = p.get("storage") or row["_guest"].storage
    if storage_id not in world.nodes[node].storages:
        raise ApiError(500, f"storage '{storage_id}' is not available on node '{node}'")
    src: Guest = row["_guest"]
    guest = Guest(vmid, node, p.get("hostname", src.hostname), "stopped", src.cores, src.memory_mib,
                  src.mem_used, src.cpu, src.maxdisk, storage_id, dict(src.nets), list(src.tags), lock="create",
                  extra=copy.deepcopy(src.extra) if row.get("_foreign") else {})
    if "tags" in p:
        guest.tags = [t for t in p["tags"].split(";") if t]
    for key, value in p.items():
        if key.startswith("net"):
            guest.nets[key] = value
    if p.get("unique"):
        guest.nets = {k: _new_mac(v, vmid) for k, v in guest.nets.items()}
    world.guests[vmid] = guest
    world.nodes[node].storages[storage_id].used += guest.maxdisk

    def done() -> None:
        guest.lock = None

    def failed(_text: str) -> None:
        world.guests.pop(vmid, None)
        world.nodes[node].storages[storage_id].used -= guest.maxdisk

    sim = src.disk_used / capped(2 * BACKUP_BYTES_S, p.get("bwlimit")) + 1
    log = [f"restoring '{p['ostemplate']}' now..", f"Total bytes read: {src.disk_used // GIB} GiB"]
    return world.start_task(node, "vzcreate", vmid, sim, user=user, log=log, on_success=done,
                            on_failure=failed).upid


def _new_mac(net: str, vmid: int) -> str:
    parts = [f"hwaddr=BC:24:11:7E:{vmid % 256:02X}:01" if x.startswith("hwaddr=") else x for x in net.split(",")]
    return ",".join(parts)
