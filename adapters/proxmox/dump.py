"""The backup/restore fallback ("dump" in a plan), for moves a migration cannot do.

    cutover: shutdown source -> vzdump (mode stop, to a shared backup storage) -> restore on the
             target under a free VMID, tagged ferry-from-<ct> -> net[n] rewritten -> start
    verify:  the copy runs on the target with the expected addresses, the source is stopped
    cleanup: the source stays, stopped, tagged ferry-retired-<epoch>; CleanupPending until that
             epoch, then (a later cleanup call, or purge_expired's sweep: one guarded purge) it is
             destroyed, only while its restored copy runs, and only if the CT under the VMID has
             the identity the restore recorded on the copy (identity.py); a CT that took the VMID
             after an unrecorded purge is left alone and the cleanup ends
    rollback: the copy is stopped and destroyed, the source started again

Why these choices (pve-docs "Backup and Restore", vzdump(1); pve-container create_vm):
- The source is shut down first, then backed up with ``mode=stop``: the archive is consistent and
  vzdump does not start the CT again afterwards (stop mode restarts only a CT it found running),
  so an address is never live on two containers.
- POST /nodes/{node}/vzdump {vmid, mode, storage, compress, bwlimit (KiB/s)} -> UPID;
  GET /nodes/{node}/storage/{storage}/content {content=backup, vmid} lists archives (volid, ctime).
- POST /nodes/{node}/lxc {vmid, ostemplate=<archive volid>, restore=1, storage, unique=1, tags,
  hostname, bwlimit (KiB/s)} restores; ``unique`` gives new MAC addresses; VMIDs are
  cluster-wide, so a free one comes from GET /cluster/nextid (or the move's target_ct); the
  move's ``hostname``, if any, is the copy's from its creation. The marker tag makes the restored copy findable
  after a crash: each step looks for it instead of remembering it.
- PUT /nodes/{node}/lxc/{vmid}/config {net0: "name=eth0,bridge=..,gw=GW,ip=CIDR,.."} readdresses
  the copy when the move asks for new addresses (MoveSpec.ips: ``ips[i]`` -> ``net{i}``, ``ip6``
  for IPv6; a bare address keeps the interface's prefix length) and its subnet's gateway
  (MoveSpec.gateway -> net0 ``gw``/``gw6``); the other properties stay (readdress.py).
- DELETE /nodes/{node}/lxc/{vmid} {purge=1} destroys a retired source after retention.
"""

from __future__ import annotations

import datetime as dt
import time

from adapters.base import Check, CleanupPending, MoveSpec, PermanentError, StepContext, TransientError
from adapters.proxmox import identity, observe
from adapters.proxmox.client import Api, ApiFailure
from adapters.proxmox.guestops import MoveContext, ensure_power, wait_unlocked
from adapters.proxmox.migrate import target_checks, target_storage
from adapters.proxmox.observe import Placement
from adapters.proxmox.readdress import gateway_of, net_changes
from adapters.proxmox.settings import ProxmoxSettings

RETIRED_PREFIX = "ferry-retired-"


def marker(ct: str) -> str:
    return f"ferry-from-{ct}"


def restored(mc: MoveContext) -> Placement | None:
    return observe.find_tagged(mc.api, marker(mc.spec.ct))


def preflight(mc: MoveContext) -> list[Check]:
    place = observe.locate(mc.api, mc.vmid)
    if place is None:
        return [Check("container exists", False, f"CT {mc.vmid} is not in the cluster")]
    checks = [Check("container exists", place.node == mc.spec.source, f"CT {mc.vmid} is on {place.node}")]
    mc.saw_source(place.status == "running")
    checks.append(Check("not HA-managed", f"ct:{mc.vmid}" not in observe.ha_sids(mc.api),
                        "an HA-managed CT moves by migration; the dump fallback would fight the HA stack"))
    bs = mc.settings.backup_storage
    rows = mc.api.get("/cluster/resources", type="storage")
    backup_rows = {r["node"]: r for r in rows if r.get("storage") == bs}
    usable = bool(bs) and all(n in backup_rows and "backup" in str(backup_rows[n].get("content", ""))
                              and backup_rows[n].get("shared") for n in (place.node, mc.spec.target))
    checks.append(Check("shared backup storage", usable,
                        f"set proxmox.backup_storage to a shared storage with 'backup' content (now {bs!r})"))
    if mc.spec.target_ct:
        try:
            mc.api.get("/cluster/nextid", vmid=mc.spec.target_ct)
            free = True
        except ApiFailure:
            free = restored(mc) is not None
        checks.append(Check("target VMID free", free, f"VMID {mc.spec.target_ct}"))
    return checks + target_checks(mc, place.row, observe.config(mc.api, place.node, mc.vmid))


def _backup(mc: MoveContext, node: str) -> str:
    """A fresh archive of the stopped source; the volid of the newest one."""
    running = observe.active_task(mc.api, mc.vmid, ("vzdump",))
    since = int(time.time()) - 1
    if running:
        mc.run(running)
    else:
        mc.run(mc.api.post(f"/nodes/{node}/vzdump", vmid=str(mc.vmid), mode="stop",
                           storage=mc.settings.backup_storage, compress="zstd", bwlimit=mc.bwlimit_kib))
    archives = mc.api.get(f"/nodes/{node}/storage/{mc.settings.backup_storage}/content", content="backup",
                          vmid=mc.vmid)
    fresh = [a for a in archives if int(a.get("ctime", 0)) >= since - 5] or archives
    if not fresh:
        raise PermanentError(f"vzdump of CT {mc.vmid} left no archive on {mc.settings.backup_storage}")
    return max(fresh, key=lambda a: int(a.get("ctime", 0)))["volid"]


def _restore(mc: MoveContext, volid: str, tags: tuple[str, ...], conf: dict) -> int:
    """Restore ``volid`` on the target; the copy's tags carry the marker and the source's identity
    record (identity.py), written with the copy itself so no crash can separate them."""
    dest = int(mc.spec.target_ct) if mc.spec.target_ct else int(mc.api.get("/cluster/nextid"))
    keep = [t for t in tags if not t.startswith(RETIRED_PREFIX)]
    record = identity.record_tag(mc.vmid, identity.of_config(conf).fingerprint, "recorded")
    try:
        upid = mc.api.post(f"/nodes/{mc.spec.target}/lxc", vmid=dest, ostemplate=volid, restore=1, unique=1,
                           storage=target_storage(mc, observe.rootfs_storage(conf)), bwlimit=mc.bwlimit_kib,
                           hostname=mc.spec.hostname, tags=";".join([*keep, marker(mc.spec.ct), record]))
    except ApiFailure as exc:
        if "already exists" in exc.message and not mc.spec.target_ct:
            raise TransientError(f"VMID {dest} was taken meanwhile; a new one is picked on retry") from None
        raise
    mc.run(upid)
    return dest


def _rewrite_nets(mc: MoveContext, node: str, vmid: int) -> None:
    """Give the copy the move's addresses and gateway (readdress.net_changes); nothing when it
    asks for none."""
    if not mc.spec.ips:
        return
    conf = observe.config(mc.api, node, vmid)
    changes = net_changes(conf, mc.spec.ips, mc.spec.gateway, vmid)
    if any(str(conf.get(key)) != value for key, value in changes.items()):
        mc.api.put(f"/nodes/{node}/lxc/{vmid}/config", **changes)


def cutover(mc: MoveContext) -> None:
    copy = restored(mc)
    if copy is not None and copy.node == mc.spec.target and copy.status == "running":
        return
    source = observe.locate(mc.api, mc.vmid)
    if copy is None:
        if source is None:
            raise PermanentError(f"CT {mc.vmid} is gone and no restored copy exists; restore it from its last backup")
        mc.memo.setdefault(f"running:{mc.vmid}", source.status == "running")
        ensure_power(mc, source.node, mc.vmid, "stopped")
        conf = observe.config(mc.api, source.node, mc.vmid)
        volid = _backup(mc, source.node)
        dest = _restore(mc, volid, source.tags, conf)
        mc.event("restored", dest_vmid=dest, archive=volid)
        mc.ctx.figures["target_vmid"] = float(dest)
    else:
        dest = copy.vmid
        creating = observe.active_task(mc.api, dest, ("vzcreate", "vzrestore"))
        if creating:
            mc.run(creating)
    wait_unlocked(mc, mc.spec.target, dest)
    _rewrite_nets(mc, mc.spec.target, dest)
    if mc.source_ran(unknown=True):  # a stopped container arrives stopped
        ensure_power(mc, mc.spec.target, dest, "running")


def expected_ips(mc: MoveContext) -> list[str] | None:
    if mc.spec.ips:
        return [address.split("/")[0] for address in mc.spec.ips]
    source = observe.locate(mc.api, mc.vmid)
    return observe.config_ips(observe.config(mc.api, source.node, mc.vmid)) if source else None


def verify(mc: MoveContext) -> None:
    copy = restored(mc)
    if copy is None or copy.node != mc.spec.target:
        raise PermanentError(f"no restored copy of CT {mc.vmid} on {mc.spec.target}")
    current = mc.api.get(f"/nodes/{copy.node}/lxc/{copy.vmid}/status/current")
    if (mc.source_ran(unknown=True) and current.get("status") != "running") or current.get("lock"):
        raise PermanentError(f"copy {copy.vmid} of CT {mc.vmid} is {current.get('status')} "
                             f"(lock {current.get('lock')}) on {copy.node}")
    conf = observe.config(mc.api, copy.node, copy.vmid)
    ips = observe.config_ips(conf)
    want = expected_ips(mc)
    if want is not None and sorted(ips) != sorted(want):
        raise PermanentError(f"copy {copy.vmid} has addresses {ips}, expected {want}")
    if mc.spec.gateway and gateway_of(conf) != mc.spec.gateway:
        raise PermanentError(f"copy {copy.vmid} routes through {gateway_of(conf)}, expected {mc.spec.gateway}")
    if mc.spec.hostname and conf.get("hostname") != mc.spec.hostname:
        raise PermanentError(f"copy {copy.vmid} is named {conf.get('hostname')}, expected {mc.spec.hostname}")
    source = observe.locate(mc.api, mc.vmid)
    if source is not None and source.status == "running":
        raise PermanentError(f"source CT {mc.vmid} runs again on {source.node}; two copies would share addresses")


def cleanup(mc: MoveContext) -> None:
    """Retire the stopped source: tag it ferry-retired-<epoch> (the end of its retention), then
    destroy it through the same guarded purge as :func:`purge_retired` once that epoch has passed
    and the restored copy still runs. Until then raise CleanupPending, so the engine calls cleanup
    again later (``ferry cleanup``). Level-triggered: a second call after the purge finds no source
    and does nothing. Before any stop, tag or purge, the CT under the source's VMID must match the
    identity recorded on the copy (identity.py): a CT that took the VMID after a purge whose end
    ferry never wrote down is left alone, and the cleanup ends. ``retention_hours = 0`` purges
    at once."""
    cts = observe.guests(mc.api)
    source = cts.get(mc.vmid)
    if source is None or source.node != mc.spec.source:  # purged already (dump never moves it)
        return
    verdict = _claim(mc.api, cts, source)
    if verdict.stranger:
        mc.event("retired source already purged or replaced", vmid=mc.vmid, node=source.node,
                 reason=verdict.stranger)
        return
    if retired_until(source) is None:
        ensure_power(mc, source.node, mc.vmid, "stopped")
        until = int(time.time() + mc.settings.retention_hours * 3600)  # whole seconds, as tags hold them
        mc.api.put(f"/nodes/{source.node}/lxc/{mc.vmid}/config",
                   tags=";".join([*source.tags, f"{RETIRED_PREFIX}{until}"]))
        mc.event("retired source", vmid=mc.vmid, node=source.node, until=until)
        if verdict.record is not None:
            identity.mark(mc.api, verdict.record, "retired")
        cts = observe.guests(mc.api)
        source = cts.get(mc.vmid)
        if source is None:
            return
    held = _purge_if_due(mc.api, mc.settings, mc.ctx, cts, source, time.time())
    if held is not None:
        raise CleanupPending(held)


def _claim(api: Api, cts: dict[int, Placement], source: Placement) -> identity.Claim:
    """identity.claim, adopting a copy restored before ferry kept identity records: its record
    is written now, from the CT under the VMID (the old behaviour's trust, kept for that case)."""
    verdict = identity.claim(api, cts, source, retired=retired_until(source) is not None)
    copy = next((p for p in cts.values() if marker(str(source.vmid)) in p.tags), None)
    if verdict.record is None and verdict.stranger is None and copy is not None:
        return identity.Claim(identity.adopt(api, copy, source, retired=retired_until(source) is not None))
    return verdict


def retired_until(place: Placement) -> int | None:
    """The epoch a retired source may be destroyed after (its ferry-retired-<epoch> tag)."""
    until = [int(t[len(RETIRED_PREFIX):]) for t in place.tags
             if t.startswith(RETIRED_PREFIX) and t[len(RETIRED_PREFIX):].isdigit()]
    return until[0] if until else None


def _hold_reason(place: Placement, copy: Placement | None, now: float) -> str | None:
    """Why the retired source ``place`` must stay for now; None once it may be destroyed: its
    retention ended, it is stopped, and its restored copy runs (the copy proves the move held)."""
    until = retired_until(place)
    if until is None:
        return f"CT {place.vmid} on {place.node} carries no {RETIRED_PREFIX}<epoch> tag; not purged"
    if until > now:
        due = dt.datetime.fromtimestamp(until, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"source CT {place.vmid} kept stopped on {place.node} until {due} (retention), then purged"
    if place.status != "stopped":
        return f"retired source CT {place.vmid} is {place.status} on {place.node}; not purged while it runs"
    if copy is None or copy.status != "running":
        what = "is gone" if copy is None else f"{copy.vmid} is {copy.status} on {copy.node}"
        return f"restored copy of CT {place.vmid} {what}; source kept until the copy runs"
    return None


def _purge_if_due(api: Api, settings: ProxmoxSettings, ctx: StepContext, cts: dict[int, Placement],
                  place: Placement, now: float) -> str | None:
    """Destroy the retired source ``place`` if it is the source its identity record describes and
    :func:`_hold_reason` allows it; else the reason it stays. The copy that must run is the one
    holding the matching record (the marker's holder for a move from before records).
    ``purge=1``: Proxmox also drops the CT from replication jobs, backup jobs and HA resources
    (pve-container API2/LXC.pm destroy_vm), so nothing refers to the vanished VMID."""
    vmid = place.vmid
    verdict = _claim(api, cts, place)
    if verdict.stranger:
        return verdict.stranger
    copy = verdict.record.copy if verdict.record else None
    held = _hold_reason(place, copy, now)
    if held is None and copy is not None:
        mc = MoveContext(api, settings, MoveSpec(str(vmid), place.node, copy.node), ctx)
        mc.run(api.delete(f"/nodes/{place.node}/lxc/{vmid}", purge=1))
        mc.event("purged retired source", vmid=vmid, node=place.node, copy=copy.vmid)
        if verdict.record is not None:
            identity.mark(api, verdict.record, "purged")
    return held


def purge_retired(api: Api, settings: ProxmoxSettings, ctx: StepContext, now: float) -> list[int]:
    """Destroy every retired source whose retention ended while its restored copy runs (the
    sweep for sources no pending move covers); the same guard and call as :func:`cleanup`."""
    cts = observe.guests(api)
    return [vmid for vmid, place in sorted(cts.items())
            if retired_until(place) is not None and _purge_if_due(api, settings, ctx, cts, place, now) is None]


def destroy_copy(mc: MoveContext, copy: Placement | None) -> None:
    """Stop and destroy a restored copy (after its restore task, if one still runs)."""
    if copy is None:
        return
    creating = observe.active_task(mc.api, copy.vmid, ("vzcreate", "vzrestore"))
    if creating:
        mc.run(creating)
    ensure_power(mc, copy.node, copy.vmid, "stopped")
    mc.run(mc.api.delete(f"/nodes/{copy.node}/lxc/{copy.vmid}", purge=1))


def rollback(mc: MoveContext) -> None:
    destroy_copy(mc, restored(mc))
    source = observe.locate(mc.api, mc.vmid)
    if source is not None and mc.source_ran(unknown=True):
        ensure_power(mc, source.node, mc.vmid, "running")
