"""Restart-mode migration of one container ("live" and "restart" in a plan), HA-aware.

Facts this is built on (pve-container src/PVE/API2/LXC.pm and src/PVE/LXC/Migrate.pm):
- LXC has no live migration: a running CT with ``online=1`` dies in Migrate.pm with "lxc live
  migration is currently not implemented"; ``restart=1`` stops it (after ``timeout`` s of
  shutdown, default 180), copies the volumes, starts it on the target. So both plan methods
  "live" and "restart" map to restart mode, pre-seeded by replication where possible.
- POST /nodes/{node}/lxc/{vmid}/migrate {target, restart, timeout, bwlimit (KiB/s),
  target-storage ("src:dst,..." map)} returns a ``vzmigrate`` UPID; for an HA-managed CT it only
  forks ``hamigrate`` which runs ``ha-manager migrate``, so ferry asks the HA stack directly
  (POST /cluster/ha/resources/{sid}/migrate {node}) and then follows the real ``vzmigrate`` task
  the LRM starts, and the HA service state, until the CT runs on the target.
- GET /nodes/{node}/lxc/{vmid}/migrate {target} (PVE >= 8.4, "migrate_vm_precondition") answers
  running, allowed-nodes, not-allowed-nodes (blocking HA resources) and checks the lock.
- Presync: a storage replication job (POST /cluster/replication {id "<vmid>-<n>", target,
  type "local", schedule, rate (MB/s, minimum 1), comment}; POST /nodes/{node}/replication/{id}/schedule_now;
  GET /nodes/{node}/replication/{id}/status -> last_sync, fail_count, error) copies the ZFS volume
  while the CT runs, so the migration sends only the last delta. DELETE /cluster/replication/{id}
  removes it afterwards. Replication needs local ZFS (zfspool) with the same storage id on the target.
  A run snapshots at its start (PVE::Replication), so ferry runs it again while the previous run was
  long (its ``duration``), and the stop -> start window carries only seconds of changes.
"""

from __future__ import annotations

import time
from dataclasses import replace

from adapters.base import Check, PermanentError, TransientError
from adapters.proxmox import observe
from adapters.proxmox.client import ApiFailure
from adapters.proxmox.guestops import MoveContext, ensure_power, wait_unlocked
from adapters.proxmox.tasks import TaskFailed

PRESYNC_COMMENT = "ferry presync"
#: Replication runs per presync at most. Each run sends what changed during the previous one
#: (pvesr snapshots at the start of a run), like repeated rsync rounds: a long first run of a big
#: volume leaves a big delta, a second run shrinks it to what changes in a few seconds.
PRESYNC_PASSES = 3
#: A run this short (cluster seconds) leaves a delta small enough for the stop -> start window.
PRESYNC_SETTLE_S = 10.0
#: Task errors that will recur on a retry (pve-container Migrate.pm prepare/phase1 texts).
PERMANENT_TASK_ERRORS = ("cannot migrate local", "can't determine assigned storage", "is not available on node",
                         "no such", "not enough space", "out of space", "already exists", "not implemented")


def target_storage(mc: MoveContext, storage: str | None) -> str | None:
    """Where the rootfs goes: the move's ``target_storage``, else proxmox.storage_map, else the
    same storage id."""
    if mc.spec.target_storage:
        return mc.spec.target_storage
    return mc.settings.storage_map.get(storage or "", storage)


def storage_map_param(mc: MoveContext, storage: str | None) -> str | None:
    """``target-storage`` for the API ("src:dst", pve-targetstorage); None keeps the same storage."""
    dst = target_storage(mc, storage)
    return f"{storage}:{dst}" if storage and dst and dst != storage else None


def preflight(mc: MoveContext) -> list[Check]:
    spec, vmid = mc.spec, mc.vmid
    place = observe.locate(mc.api, vmid)
    if place is None:
        return [Check("container exists", False, f"CT {vmid} is not in the cluster")]
    if place.node == spec.target:
        return [Check("container exists", True, f"CT {vmid} already runs on {spec.target}")]
    checks = [Check("container exists", place.node == spec.source,
                    f"CT {vmid} is on {place.node}, the plan says {spec.source}")]
    mc.saw_source(place.status == "running")
    try:
        pre = mc.api.get(f"/nodes/{place.node}/lxc/{vmid}/migrate", target=spec.target)
        allowed = spec.target in (pre.get("allowed-nodes") or [])
        blocking = (pre.get("not-allowed-nodes") or {}).get(spec.target)
        checks.append(Check("migration precondition", allowed, f"blocked by {blocking}" if blocking else ""))
    except TransientError as exc:  # a lock: cutover waits for it
        checks.append(Check("unlocked", True, f"{exc}; cutover waits up to {mc.settings.lock_wait_s:g} s"))
    except ApiFailure as exc:
        if exc.status != 501:  # older PVE has no LXC precondition endpoint
            checks.append(Check("migration precondition", False, exc.message))
    checks += target_checks(mc, place.row, observe.config(mc.api, place.node, vmid))
    return checks


def target_checks(mc: MoveContext, row: dict, conf: dict) -> list[Check]:
    """Target node receives (online, not in HA maintenance) and its storage has room."""
    target = mc.spec.target
    rows = mc.api.get("/cluster/resources")
    nodes = {r["node"]: r for r in rows if r.get("type") == "node"}
    state = observe.node_states(mc.api).get(target, "")
    checks = [Check("target node online", nodes.get(target, {}).get("status") == "online", f"{target}"),
              Check("target node not in maintenance", state != "maintenance", f"{target}: {state}")]
    src_storage = observe.rootfs_storage(conf)
    dst_storage = target_storage(mc, src_storage)
    st = next((r for r in rows if r.get("type") == "storage" and r.get("node") == target
               and r.get("storage") == dst_storage), None)
    if st is None:
        checks.append(Check("target storage", False, f"storage {dst_storage} is not available on {target}; "
                                                      f"map it with proxmox.storage_map"))
    else:
        need = 0 if (st.get("shared") and dst_storage == src_storage) else int(row.get("maxdisk") or 0)
        free = int(st.get("maxdisk") or 0) - int(st.get("disk") or 0)
        checks.append(Check("target storage space", free >= need, f"{dst_storage} on {target}: "
                                                                    f"{free / 2**30:.1f} GiB free, {need / 2**30:.1f} GiB needed"))
    return checks


def _ferry_jobs(mc: MoveContext) -> list[dict]:
    return [j for j in mc.api.get("/cluster/replication")
            if int(j.get("guest", -1)) == mc.vmid and j.get("comment") == PRESYNC_COMMENT]


def presync(mc: MoveContext) -> None:
    """Pre-seed the target with a replication run, when storage allows; else do nothing."""
    place = observe.locate(mc.api, mc.vmid)
    if not mc.settings.presync or place is None or place.node != mc.spec.source:
        return
    conf = observe.config(mc.api, place.node, mc.vmid)
    storage = observe.rootfs_storage(conf)
    rows = [r for r in mc.api.get("/cluster/resources", type="storage") if r.get("storage") == storage]
    kinds = {(r["node"], r.get("plugintype"), r.get("shared")) for r in rows}
    if storage_map_param(mc, storage) or (place.node, "zfspool", 0) not in kinds or \
            (mc.spec.target, "zfspool", 0) not in kinds:
        mc.event("presync skipped", reason=f"storage {storage} is not local ZFS on both nodes")
        return
    if mc.bwlimit_kib is not None and mc.bwlimit_kib < 1024:  # replication's rate: minimum 1 MB/s
        mc.event("presync skipped", reason=f"bandwidth cap {mc.bwlimit_kib} KiB/s is below replication's 1 MB/s")
        return
    job = next((j for j in _ferry_jobs(mc) if j.get("target") == mc.spec.target), None)
    if job is None:
        taken = {j["id"] for j in mc.api.get("/cluster/replication")}
        job_id = next(f"{mc.vmid}-{n}" for n in range(100) if f"{mc.vmid}-{n}" not in taken)
        rate = round(mc.bwlimit_kib / 1024, 1) if mc.bwlimit_kib else None  # rate: MB/s
        mc.api.post("/cluster/replication", id=job_id, target=mc.spec.target, type="local",
                    schedule="*/15", rate=rate, comment=PRESYNC_COMMENT)
    else:
        job_id = job["id"]
    for _ in range(PRESYNC_PASSES):
        took = _run_replication(mc, place.node, job_id)
        if took is None or took <= PRESYNC_SETTLE_S:
            break


def _run_replication(mc: MoveContext, node: str, job_id: str) -> float | None:
    """One replication run, waited for. Returns how long it took by the cluster's account
    (``duration``, PVE::Replication run_replication: tv_interval of the run), None if it failed
    or reported no duration: then no further pass is worth it."""
    status_path = f"/nodes/{node}/replication/{job_id}/status"
    before = int(mc.api.get(status_path).get("last_sync") or 0)
    mc.api.post(f"/nodes/{node}/replication/{job_id}/schedule_now")
    deadline = time.monotonic() + mc.settings.task_timeout_s
    while time.monotonic() < deadline:
        status = mc.api.get(status_path)
        if status.get("error") and int(status.get("fail_count") or 0) > 0:
            mc.event("presync failed", job=job_id, error=status["error"])
            return None
        if int(status.get("last_sync") or 0) > before:  # a newer run than the one before ours ended
            took = status.get("duration")
            mc.event("presync done", job=job_id, last_sync=status["last_sync"], duration_s=took)
            return float(took) if took is not None else None
        mc.sleep()
    mc.event("presync timed out", job=job_id)
    return None


def cutover(mc: MoveContext) -> None:
    """Move the CT to the target unless it is there; follow a migration already under way."""
    spec, vmid = mc.spec, mc.vmid
    for _ in range(3):
        place = observe.locate(mc.api, vmid)
        if place is None:
            raise PermanentError(f"CT {vmid} vanished from the cluster during its move")
        if place.node == spec.target and not place.lock:
            return
        running = observe.active_task(mc.api, vmid, ("vzmigrate", "hamigrate"))
        if running:
            mc.event("following migration already under way", upid=running)
            _judge(mc, running)
            continue
        if place.node == spec.target:
            wait_unlocked(mc, place.node, vmid)
            return
        mc.memo.setdefault(f"running:{vmid}", place.status == "running")
        if f"ct:{vmid}" in observe.ha_sids(mc.api):
            _ha_migrate(mc, place.node)
        else:
            wait_unlocked(mc, place.node, vmid)
            upid = mc.api.post(f"/nodes/{place.node}/lxc/{vmid}/migrate", target=spec.target,
                               restart=1 if place.status == "running" else None,
                               timeout=mc.settings.shutdown_timeout_s if place.status == "running" else None,
                               bwlimit=mc.bwlimit_kib, **{"target-storage": storage_map_param(
                                   mc, observe.rootfs_storage(observe.config(mc.api, place.node, vmid)))})
            _judge(mc, upid)
    place = observe.locate(mc.api, vmid)
    if place is None or place.node != spec.target:
        raise TransientError(f"CT {vmid} is not on {spec.target} after its migration")


def _judge(mc: MoveContext, upid: str) -> None:
    """Follow a migration task; a failure with the CT intact on its node is worth a retry."""
    try:
        mc.run(upid)
    except TaskFailed as exc:
        if any(text in exc.exitstatus for text in PERMANENT_TASK_ERRORS):
            raise
        raise TransientError(str(exc)) from None


def _ha_migrate(mc: MoveContext, source: str) -> None:
    """Ask the HA stack, then follow the LRM's vzmigrate task and the service state."""
    vmid, target, sid = mc.vmid, mc.spec.target, f"ct:{mc.vmid}"
    asked = int(time.time()) - 2
    mc.api.post(f"/cluster/ha/resources/{sid}/migrate", node=target)
    deadline = time.monotonic() + mc.settings.ha_timeout_s
    while time.monotonic() < deadline:
        task = observe.latest_task(mc.api, vmid, ("vzmigrate",), since=asked)
        if task is not None:
            _judge(mc, task["upid"])
        service = observe.ha_service(mc.api, vmid) or {}
        if service.get("state") == "error":
            raise PermanentError(f"HA service {sid} is in error state; see 'ha-manager status' and the task log")
        if service.get("node") == target and service.get("state") in ("started", "stopped"):
            return
        mc.sleep()
    raise TransientError(f"HA did not move {sid} from {source} to {target} within {mc.settings.ha_timeout_s:g} s")


def verify(mc: MoveContext) -> None:
    place = observe.locate(mc.api, mc.vmid)
    if place is None or place.node != mc.spec.target:
        raise PermanentError(f"CT {mc.vmid} is not on {mc.spec.target} (found on {place.node if place else 'no node'})")
    current = mc.api.get(f"/nodes/{mc.spec.target}/lxc/{mc.vmid}/status/current")
    # A source that ran must run on the target; one that was stopped may have been started by
    # its owner since (ferry itself never starts it).
    if mc.source_ran(unknown=True) and current.get("status") != "running":
        raise PermanentError(f"CT {mc.vmid} is {current.get('status')} on {mc.spec.target}, expected running")
    if current.get("lock"):
        raise PermanentError(f"CT {mc.vmid} on {mc.spec.target} is still locked ({current['lock']})")


def cleanup(mc: MoveContext) -> None:
    """Remove ferry's replication jobs for this CT (pvesr then removes the replicated volumes)."""
    for job in _ferry_jobs(mc):
        mc.api.delete(f"/cluster/replication/{job['id']}")


def rollback(mc: MoveContext) -> None:
    """The CT runs on the source again: wait out a running migration, move back if it landed."""
    running = observe.active_task(mc.api, mc.vmid, ("vzmigrate", "hamigrate"))
    if running:
        try:
            mc.run(running)
        except TaskFailed:
            pass
    place = observe.locate(mc.api, mc.vmid)
    if place is not None and place.node == mc.spec.target:
        back = MoveContext(mc.api, mc.settings, replace(mc.spec, source=mc.spec.target, target=mc.spec.source,
                                                        method="restart", target_storage=None),
                           mc.ctx, mc.memo)
        cutover(back)
    elif place is not None and mc.source_ran(unknown=False):
        ensure_power(mc, place.node, mc.vmid, "running")
    cleanup(mc)
