"""Cluster-wide stacks of the double: HA (pve-ha-manager's CRM/LRM, reduced to what a client
can observe), storage replication (pve-guest-common PVE::Replication + pve-manager
API2/ReplicationConfig.pm, API2/Replication.pm) and /cluster/nextid.

HA requests are queued (as ``ha-manager migrate`` queues a CRM command) and acted on after a delay:
the LRM of the source node then runs an ordinary ``vzmigrate`` task, which is what ferry follows.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tests.doubles.pvedouble.model import ApiError, HaState, ReplicationJob

if TYPE_CHECKING:
    from tests.doubles.pvedouble.world import World

REPL_BYTES_S = 800 * (1 << 20)


def request_ha(world: World, sid: str, kind: str, target: str) -> None:
    if sid not in world.ha:
        raise ApiError(500, f"service '{sid}' is not managed by ha")
    from tests.doubles.pvedouble.world import HA_CRM_DELAY_S

    world.ha[sid].request = (kind, target, time.monotonic() + world.real_seconds(HA_CRM_DELAY_S))


def ha_status_current(world: World) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"id": "quorum", "type": "quorum", "status": "OK", "quorate": 1}]
    for sid, st in sorted(world.ha.items()):
        guest = world.guests.get(int(sid.split(":")[1]))
        rows.append({"id": f"service:{sid}", "sid": sid, "type": "service", "state": st.current,
                     "node": guest.node if guest else None, "request_state": st.state,
                     "crm_state": st.current, "status": f"{sid} ({guest.node if guest else '?'}, {st.current})"})
    return rows


def _start_ha_move(world: World, st: HaState, kind: str, target: str) -> None:
    from tests.doubles.pvedouble.guests import begin_migration

    guest = world.guests[int(st.sid.split(":")[1])]
    st.current = "migrate" if kind == "migrate" else "relocate"

    def ended(ok: bool) -> None:
        st.current = "started" if guest.status == "running" else "stopped"

    if guest.node == target:
        ended(True)
        return
    # PVE::HA::Resources::PVECT::migrate runs a restart-mode migration for a running CT.
    begin_migration(world, guest, target, restart=True, storage_map=None, bwlimit_kib=None,
                    user="root@pam", on_end=ended)


def _recover_from_dead_nodes(world: World, now: float) -> None:
    """HA services of an offline node go to the live node with the fewest guests once the node is
    fenced, ``world.ha_recovery_s`` simulated seconds after its loss (the lost node's watchdog
    fences it; the CRM then recovers its services: pve-ha-manager's fence -> recovery -> started)."""
    live = sorted(n.name for n in world.nodes.values() if n.online)
    for st in world.ha.values():
        guest = world.guests.get(int(st.sid.split(":")[1]))
        if guest is None or world.nodes[guest.node].online or not live:
            st.lost_at = None
            continue
        if st.lost_at is None:
            st.lost_at, st.current = now, "fence"
        elif st.lost_at + world.real_seconds(world.ha_recovery_s) <= now:
            guest.node = min(live, key=lambda n: (sum(g.node == n for g in world.guests.values()), n))
            guest.status = "running" if st.state in ("started", "enabled") else "stopped"
            st.lost_at, st.current = None, "started" if guest.status == "running" else "stopped"


def run_due(world: World, now: float) -> None:
    _recover_from_dead_nodes(world, now)
    for st in world.ha.values():
        if st.request and st.request[2] <= now:
            kind, target, _ = st.request
            st.request = None
            _start_ha_move(world, st, kind, target)
    for job in world.replication.values():
        if job.sync_due is not None and job.sync_due <= now:
            job.sync_due = None
            # Epoch seconds; a run never reports the second of the one before (real runs last
            # longer than a second, here scaled time may squeeze two into one).
            job.last_try = job.last_sync = max(int(time.time()), job.last_sync + 1)
            job.fail_count, job.error = 0, None
            job.synced_at_sim, job.duration = job.syncing_at_sim, round(job.syncing_s, 3)


def replica_at(world: World, vmid: int, target: str) -> float | None:
    """Simulated instant of the newest snapshot of ``vmid`` already replicated to ``target``."""
    done = [j.synced_at_sim for j in world.replication.values()
            if j.guest == vmid and j.target == target and j.last_sync and j.synced_at_sim is not None]
    return max(done) if done else None


def replication_create(world: World, p: dict[str, Any]) -> None:
    job_id = p["id"]
    guest_s, _, num = job_id.partition("-")
    if not (guest_s.isdigit() and num.isdigit()):
        raise ApiError(400, "Parameter verification failed.", {"id": "invalid format - replication job id"})
    if job_id in world.replication:
        raise ApiError(500, f"replication job '{job_id}' already exists")
    guest = world.guests.get(int(guest_s))
    if guest is None:
        raise ApiError(500, f"guest {guest_s} does not exist")
    if p["target"] == guest.node:
        raise ApiError(500, "unable to sync to local node")
    world.node(p["target"])
    storage = world.nodes[guest.node].storages[guest.storage]
    if storage.plugintype != "zfspool":
        raise ApiError(500, f"missing replicate feature on volume '{guest.storage}:subvol-{guest.vmid}-disk-0'")
    world.replication[job_id] = ReplicationJob(job_id, guest.vmid, p["target"], guest.node,
                                               p.get("schedule", "*/15"), p.get("rate"), p.get("comment"))


def replication_delete(world: World, job_id: str) -> None:
    if world.replication.pop(job_id, None) is None:
        raise ApiError(500, f"replication job '{job_id}' does not exist")


def schedule_now(world: World, node: str, job_id: str) -> str:
    job = world.replication.get(job_id)
    if job is None:
        raise ApiError(500, f"no such replication job '{job_id}'")
    guest = world.guests[job.guest]
    # pvesr snapshots the volume when the run starts and sends it whole the first time, then
    # only what changed since the previous run's snapshot (PVE::Replication::replicate).
    now = world.sim_time()
    sent = guest.changed_since(job.synced_at_sim, now) if job.synced_at_sim is not None else guest.disk_used
    job.syncing_at_sim, job.syncing_s = now, sent / REPL_BYTES_S
    job.sync_due = time.monotonic() + world.real_seconds(job.syncing_s)
    return ""


def job_status(world: World, node: str, job_id: str) -> dict[str, Any]:
    job = world.replication.get(job_id)
    if job is None:
        raise ApiError(500, f"no such replication job '{job_id}'")
    return job.state()


def nextid(world: World, p: dict[str, Any]) -> str:
    if "vmid" in p:
        if int(p["vmid"]) in world.guests:
            raise ApiError(400, "Parameter verification failed.", {"vmid": f"VM {p['vmid']} already exists"})
        return str(p["vmid"])
    vmid = 100
    while vmid in world.guests:
        vmid += 1
    return str(vmid)
