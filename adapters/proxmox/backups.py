"""Restores from backups on Proxmox VE, when a node is dead (adapters/restore.py's steps).

    list_backups: GET /nodes/{live}/storage/{storage}/content {content=backup} on every storage
                  that holds backups and every node can read (shared, or Proxmox Backup Server)
    restore:      GET /cluster/nextid -> POST /nodes/{target}/lxc {vmid, ostemplate=<volid>,
                  restore=1, unique=1, storage, bwlimit, tags} -> the vzcreate task (UPID) to its end
    start/verify: POST /nodes/{target}/lxc/{vmid}/status/start; the copy runs, unlocked
    cleanup:      the dead node back: its copy is stopped (POST .../status/stop), onboot=0 and
                  tagged ferry-stale (PUT .../config); never destroyed
    HA:           an HA resource (GET /cluster/ha/resources) is Proxmox HA's to recover: ferry
                  only follows it (it leaves the dead node and runs), never restores it itself

Why (pve-docs api-viewer; pve-container src/PVE/API2/LXC.pm create_vm; pve-ha-manager):
- Content rows carry ``volid``, ``ctime`` (epoch s), ``size`` (bytes), ``format``, ``vmid``,
  ``subtype`` (``lxc``), ``notes``, and on PBS ``verification`` (``{"state": "failed"}`` is not
  usable). The newest usable archive per VMID is restored.
- VMIDs are cluster-wide: create_vm calls ``PVE::Cluster::check_vmid_unused`` unless the same CT's
  config exists on *this* node and ``restore`` and ``force`` are set. The dead node's config still
  holds the old VMID, so the copy gets a new one from /cluster/nextid (``force`` is never sent:
  it would overwrite). ``unique=1`` gives the copy new MAC addresses; its IP addresses are the
  archive's, safe because the dead node is fenced before the copy starts.
- The tag ``ferry-from-<ct>`` (adapters/proxmox/dump.py's marker) finds the copy after a crash:
  each step looks for it instead of remembering the new VMID.
- A node's guests cannot be read while it is down (the API proxies to the node: HTTP 595), so
  nothing here asks the dead node anything until cleanup finds it online again.
"""

from __future__ import annotations

import time
from typing import Any

from adapters.base import (
    Check,
    CleanupPending,
    Copy,
    JournalEntry,
    MoveSpec,
    Observation,
    PermanentError,
    StepContext,
    TransientError,
)
from adapters.proxmox import observe
from adapters.proxmox.client import Api, ApiFailure, ProxmoxClient
from adapters.proxmox.dump import marker
from adapters.proxmox.guestops import MoveContext, ensure_power, wait_unlocked
from adapters.proxmox.settings import ProxmoxSettings
from adapters.restore import STALE_MARK, Backup, RestoreSteps


def _ignore(entry: JournalEntry) -> None:
    return None


def node_rows(api: Api) -> dict[str, dict[str, Any]]:
    return {r["node"]: r for r in api.get("/cluster/resources", type="node")}


def online_nodes(api: Api) -> list[str]:
    return sorted(name for name, row in node_rows(api).items() if row.get("status") == "online")


def backup_storages(api: Api) -> list[str]:
    """Storages with backup content every node reads: shared ones and Proxmox Backup Servers."""
    rows = api.get("/cluster/resources", type="storage")
    return sorted({r["storage"] for r in rows if "backup" in str(r.get("content", "")).split(",")
                   and (r.get("shared") or r.get("plugintype") == "pbs")})


def _usable(row: dict[str, Any]) -> bool:
    verification = row.get("verification") or {}
    return row.get("subtype", "lxc") == "lxc" and verification.get("state") != "failed" and "vmid" in row


class ProxmoxRestore(RestoreSteps):
    """Restores over the Proxmox API (module doc)."""

    def __init__(self, settings: ProxmoxSettings, client: ProxmoxClient) -> None:
        self.settings, self.client = settings, client

    def _mc(self, spec: MoveSpec, ctx: StepContext) -> MoveContext:
        return MoveContext(Api(self.client, ctx.journal), self.settings, spec, ctx)

    # -- reading ---------------------------------------------------------------------------------
    def list_backups(self, node: str, cts: list[str]) -> list[Backup]:
        api = Api(self.client, _ignore)
        reader = next(iter(n for n in online_nodes(api) if n != node), None)
        if reader is None:
            raise PermanentError("no online node to list backups from")
        wanted, out = set(cts), []
        for storage in backup_storages(api):
            for row in api.get(f"/nodes/{reader}/storage/{storage}/content", content="backup"):
                if _usable(row) and str(row["vmid"]) in wanted:
                    out.append(Backup(str(row["vmid"]), row["volid"], float(row.get("ctime", 0)),
                                      int(row.get("size", 0)), storage))
        return out

    def observe(self, spec: MoveSpec) -> Observation:
        api = Api(self.client, _ignore)
        online = set(online_nodes(api))
        place = observe.locate(api, int(spec.ct))
        if spec.source not in online:
            source = Copy(spec.source, spec.ct, "unknown")
        else:
            here = place is not None and place.node == spec.source
            source = Copy(spec.source, spec.ct, _status(place.status) if here and place else "absent")
        copy = place if spec.ha else observe.find_tagged(api, marker(spec.ct))
        if copy is None or copy.node != spec.target or copy.node == spec.source:
            return Observation(source, Copy(spec.target, spec.dest_ct, "absent"))
        status = "partial" if copy.lock == "create" else _status(copy.status)
        return Observation(source, Copy(spec.target, str(copy.vmid), status))

    # -- steps -------------------------------------------------------------------------------------
    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        api = self._mc(spec, ctx).api
        online = online_nodes(api)
        checks = [Check("target online", spec.target in online, f"{spec.target} is offline"),
                  Check("source down", spec.source not in online,
                        f"{spec.source} is online again: evacuate it instead of restoring")]
        if spec.ha:
            checks.append(Check("HA-managed", f"ct:{spec.ct}" in observe.ha_sids(api),
                                f"CT {spec.ct} is no longer an HA resource; restore it from a backup"))
            return checks
        found = any(b.archive == spec.archive for b in self.list_backups(spec.source, [spec.ct]))
        checks.append(Check("archive exists", found, f"no usable archive {spec.archive} of CT {spec.ct}"))
        return checks

    def restore(self, spec: MoveSpec, ctx: StepContext) -> None:
        mc = self._mc(spec, ctx)
        if spec.ha:
            return self._follow_ha(mc)
        copy = observe.find_tagged(mc.api, marker(spec.ct))
        if copy is not None:  # restored (or restoring) before a crash
            creating = observe.active_task(mc.api, copy.vmid, ("vzcreate", "vzrestore"))
            if creating:
                mc.run(creating)
            return
        dest = int(mc.api.get("/cluster/nextid"))
        try:
            upid = mc.api.post(f"/nodes/{spec.target}/lxc", vmid=dest, ostemplate=spec.archive, restore=1,
                               unique=1, storage=spec.target_storage, bwlimit=mc.bwlimit_kib,
                               tags=";".join([marker(spec.ct), "ferry-restored"]))
        except ApiFailure as exc:
            if "already exists" in exc.message:
                raise TransientError(f"VMID {dest} was taken meanwhile; a new one is picked on retry") from None
            raise
        mc.run(upid)
        mc.event("restored", dest_vmid=dest, archive=spec.archive)
        ctx.figures["target_vmid"] = float(dest)

    def _follow_ha(self, mc: MoveContext) -> None:
        """Wait (bounded) until Proxmox HA has recovered the CT onto a live node and runs it."""
        deadline = time.monotonic() + self.settings.task_timeout_s
        while True:
            place = observe.locate(mc.api, mc.vmid)
            if place is not None and place.node != mc.spec.source and place.status == "running":
                mc.event("recovered by Proxmox HA", node=place.node)
                return
            if time.monotonic() >= deadline:
                raise TransientError(f"Proxmox HA has not recovered CT {mc.vmid} yet "
                                     f"(on {place.node if place else '?'})")
            mc.sleep()

    def start(self, spec: MoveSpec, ctx: StepContext) -> None:
        if not spec.fenced and not spec.fence_command:  # the saga fences first; never start without
            raise PermanentError(f"{spec.source} is not fenced: CT {spec.ct} is not started")
        if spec.ha:
            return  # HA starts it
        mc = self._mc(spec, ctx)
        copy = self._copy(mc)
        wait_unlocked(mc, copy.node, copy.vmid)
        ensure_power(mc, copy.node, copy.vmid, "running")

    def _copy(self, mc: MoveContext) -> observe.Placement:
        copy = observe.find_tagged(mc.api, marker(mc.spec.ct))
        if copy is None or copy.node != mc.spec.target:
            raise PermanentError(f"no restored copy of CT {mc.spec.ct} on {mc.spec.target}")
        return copy

    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        mc = self._mc(spec, ctx)
        copy = observe.locate(mc.api, mc.vmid) if spec.ha else self._copy(mc)
        if copy is None or copy.node == spec.source:
            raise PermanentError(f"CT {spec.ct} is not back on a live node")
        current = mc.api.get(f"/nodes/{copy.node}/lxc/{copy.vmid}/status/current")
        if current.get("status") != "running" or current.get("lock"):
            raise PermanentError(f"copy {copy.vmid} of CT {spec.ct} is {current.get('status')} "
                                 f"(lock {current.get('lock')}) on {copy.node}")
        ctx.figures["restored_vmid"] = float(copy.vmid)

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        mc = self._mc(spec, ctx)
        if spec.source not in online_nodes(mc.api):
            raise CleanupPending(f"{spec.source} is still down: its copy of CT {spec.ct} is checked when "
                                 "it comes back")
        stale = observe.locate(mc.api, mc.vmid)
        if spec.ha or stale is None or stale.node != spec.source:
            return  # HA moved the CT itself; or no copy came back
        ensure_power(mc, spec.source, mc.vmid, "stopped")
        tags = [t for t in stale.tags if t != STALE_MARK] + [STALE_MARK]
        mc.api.put(f"/nodes/{spec.source}/lxc/{mc.vmid}/config", onboot=0, tags=";".join(tags))
        mc.event("stale copy kept stopped", node=spec.source, onboot=0, tag=STALE_MARK)
        ctx.figures["stale_copies"] = 1.0

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        if spec.ha:
            return  # nothing of ferry's to undo: HA owns the CT
        mc = self._mc(spec, ctx)
        copy = observe.find_tagged(mc.api, marker(spec.ct))
        if copy is None or copy.node == spec.source:
            return
        creating = observe.active_task(mc.api, copy.vmid, ("vzcreate", "vzrestore"))
        if creating:
            mc.run(creating)
        ensure_power(mc, copy.node, copy.vmid, "stopped")
        wait_unlocked(mc, copy.node, copy.vmid)
        mc.run(mc.api.delete(f"/nodes/{copy.node}/lxc/{copy.vmid}", purge=1))


def _status(status: str) -> Any:
    return status if status in ("running", "stopped") else "unknown"
