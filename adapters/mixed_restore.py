"""Restores from backups in a mixed fleet: each dead node's containers come back onto whichever
node the plan chose, by the path between the two clusters.

    list_backups / lost_containers(N) --> N's cluster's restore steps (its archives)
    a restore of N's backup onto T:
        N and T in one cluster ------> that cluster's restore steps (adapters/*/restore|backups.py)
        N OpenVZ, T Proxmox ---------> OpenVZBackupOntoProxmox (below)
        any other pair --------------> refused by name, at plan time (``path_refusal``: one line,
                                       exit 2) and again at every step: a Proxmox archive is a
                                       cluster's own, and nothing restores a Proxmox CT on OpenVZ

OpenVZBackupOntoProxmox is the OpenVZ -> Proxmox move (adapters/openvz_to_proxmox.py) with the
archive taken from the backup host instead of made on the (dead) source:

    preflight  the dead node does not answer, the archive is on the backup host, the Proxmox
               node is reachable over [..ssh] and reaches the backup host, it is online, the
               addresses carry a prefix length (a bridge needs one: [networks])
    fence      adapters/restore.py (the operator's word or the fence command)
    restore    rsync on the Proxmox node: backup host:ARCHIVE -> its ``local`` dump dir; the CT's
               config read from the archive (``etc/vzdump/vps.conf`` on the backup host) and
               converted key by key (adapters/proxmox/from_openvz.py) -> POST /nodes/{T}/lxc
               {vmid, ostemplate=local:backup/<archive>, restore=1, ..., tags=marker}; stopped;
               the fetched archive removed
    start      only once fenced; verify: the copy runs with the expected addresses
    cleanup    the dead node still down: CleanupPending; back: its copy stopped, ONBOOT=no,
               marked ferry-stale (the OpenVZ restore's own rule); never deleted
    rollback   the tagged copy stopped and destroyed, the fetched archive removed
"""

from __future__ import annotations

import shlex
from typing import Any

from adapters.base import (
    Check,
    CleanupPending,
    Copy,
    MoveSpec,
    Observation,
    PermanentError,
    RefusedError,
    StepContext,
)
from adapters.mixed import by_path
from adapters.openvz import inventory as ovz
from adapters.openvz.backups import BACKUP_HOST
from adapters.openvz.transfer import bwlimit, ssh_command
from adapters.openvz_to_proxmox import OpenVZToProxmox, marker
from adapters.proxmox import observe
from adapters.proxmox.client import Api
from adapters.proxmox.dump import destroy_copy
from adapters.proxmox.from_openvz import restore_params
from adapters.proxmox.guestops import ensure_power, wait_unlocked
from adapters.restore import Backup, RestoreSteps
from fleet.model import Container


class OpenVZBackupOntoProxmox(OpenVZToProxmox):
    """A dead OpenVZ node's backup restored onto a Proxmox node (module doc)."""

    def __init__(self, openvz: Any, proxmox: Any) -> None:
        super().__init__(openvz, proxmox)
        self.backups = openvz.restores()

    def _fetched(self, spec: MoveSpec) -> str:
        return f"{self.pve.settings.ssh.dump_dir}/{str(spec.archive).rsplit('/', 1)[-1]}"

    def _archive_conf(self, spec: MoveSpec) -> dict[str, str]:
        return self.backups.store.config_of(spec.source, str(spec.archive))

    def _pve(self, spec: MoveSpec, argv: list[str], ctx: StepContext, **kw: Any):
        return self.pve.shell.run(spec.target, argv, ctx.journal, **kw)

    def observe(self, spec: MoveSpec) -> Observation:
        copy = self._restored(spec, Api(self.pve.client, self.pve.journal))
        target = Copy(spec.target, spec.dest_ct, "absent") if copy is None else Copy(
            copy.node, str(copy.vmid), "partial" if copy.lock == "create" else copy.status)
        return Observation(source=Copy(spec.source, spec.ct, "unknown"), target=target)  # type: ignore[arg-type]

    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        store, ssh = self.backups.store, self.pve.settings.ssh
        checks = [Check("source down", not store.reachable(spec.source, ctx.journal),
                        f"{spec.source} answers again: evacuate it instead of restoring")]
        found = {b.archive for b in store.archives(spec.source, ctx.journal)}
        checks.append(Check("archive exists", str(spec.archive) in found, f"no archive {spec.archive} of CT {spec.ct}"))
        host = store.location.host
        checks.append(Check("archives on a backup host", host is not None,
                            "a Proxmox node fetches the archive from [openvz.backups] host; a path only the "
                            "OpenVZ nodes mount is out of its reach"))
        checks.append(Check("SSH to the Proxmox node", spec.target in ssh.nodes, f"add {spec.target} to [..ssh.nodes]"))
        if host is not None and spec.target in ssh.nodes:
            reach = self._pve(spec, [*shlex.split(ssh_command(self.backups.settings, BACKUP_HOST)),
                                     f"{host.user}@{host.host}", "true"], ctx, check=False, timeout=60)
            checks.append(Check("backup host reachable", reach.ok,
                                f"{spec.target} cannot log in to {host.host} (its key, known_hosts)"))
        ips = list(spec.ips)
        checks.append(Check("addresses for a bridge", bool(ips) and all("/" in ip for ip in ips),
                            f"{ips or 'the venet addresses of the archive'}: a bridged interface needs a prefix "
                            f"length; declare the subnet in [networks] so the plan writes it with its gateway"))
        nodes = {r["node"]: r for r in self._mc(spec, ctx).api.get("/cluster/resources", type="node")}
        state = nodes.get(spec.target, {}).get("status", "not in the cluster")
        checks.append(Check("target node online", state == "online", f"{spec.target} is {state}"))
        return checks

    def restore(self, spec: MoveSpec, ctx: StepContext) -> None:
        mc = self._mc(spec, ctx)
        copy = self._restored(spec, mc.api)
        if copy is None:
            host = self.backups.store.location.host
            local = self._fetched(spec)
            self._pve(spec, ["rsync", "-a", *bwlimit(spec.bwlimit_kib), "--mkpath", "-e",
                             ssh_command(self.backups.settings, BACKUP_HOST),
                             f"{host.user}@{host.host}:{spec.archive}", local], ctx)
            conf = self._archive_conf(spec)
            target = self._target(spec, mc, conf, local.rsplit("/", 1)[-1])
            mc.event("restore converted from backup", vmid=target.vmid, archive=target.archive)
            mc.run(mc.api.post(f"/nodes/{spec.target}/lxc", **restore_params(conf, target), tags=marker(spec.ct)))
            ctx.figures["target_vmid"] = float(target.vmid)
            self._pve(spec, ["rm", "-f", local], ctx)
            copy = self._restored(spec, mc.api)
            if copy is None:
                raise PermanentError(f"the restore of CT {spec.ct} left no container tagged {marker(spec.ct)}")
        wait_unlocked(mc, copy.node, copy.vmid)

    def start(self, spec: MoveSpec, ctx: StepContext) -> None:
        if not spec.fenced and not spec.fence_command:  # the saga fences first; never start without
            raise PermanentError(f"{spec.source} is not fenced: CT {spec.ct} is not started")
        mc = self._mc(spec, ctx)
        copy = self._restored(spec, mc.api)
        if copy is None:
            raise PermanentError(f"CT {spec.ct} is not restored on {spec.target}")
        ensure_power(mc, copy.node, copy.vmid, "running")

    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        mc = self._mc(spec, ctx)
        copy = self._restored(spec, mc.api)
        if copy is None or copy.node != spec.target or copy.status != "running":
            raise PermanentError(f"no running copy of CT {spec.ct} on {spec.target}")
        expected = [ip.split("/")[0] for ip in spec.ips]
        found = observe.config_ips(observe.config(mc.api, copy.node, copy.vmid))
        if found != expected:
            raise PermanentError(f"copy {copy.vmid} has addresses {found}, expected {expected}")

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        if not self.backups.store.reachable(spec.source, ctx.journal):
            raise CleanupPending(f"{spec.source} is still down: its copy of CT {spec.ct} is checked when it comes back")
        conf = self.ovz.shell.run(spec.source, ["cat", f"/etc/vz/conf/{spec.ct}.conf"], ctx.journal, check=False)
        if conf.ok:
            self.backups._keep_stopped(spec, ovz.parse_conf(conf.out), ctx)
            ctx.figures["stale_copies"] = 1.0

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        mc = self._mc(spec, ctx)
        destroy_copy(mc, self._restored(spec, mc.api))
        if spec.target in self.pve.settings.ssh.nodes:
            self._pve(spec, ["rm", "-f", self._fetched(spec)], ctx, check=False)


@by_path("observe", "preflight", "restore", "start", "verify", "cleanup", "rollback")
class MixedRestore(RestoreSteps):
    """Restore steps over the clusters of a MixedBackend (module doc)."""

    def __init__(self, mixed: Any) -> None:
        self.mixed = mixed
        self._paths: dict[tuple[str, str], Any] = {}

    def _steps(self, node: str) -> RestoreSteps:
        return self.mixed.members[self.mixed._cluster(node)].restores()

    def path_refusal(self, source: str, target: str) -> str | None:
        src, dst = self.mixed._cluster(source), self.mixed._cluster(target)
        kinds = (self.mixed.members[src].name, self.mixed.members[dst].name)
        if src == dst or kinds == ("openvz", "proxmox"):
            return None
        return (f"the plan restores a backup of {kinds[0]} cluster {src} onto {kinds[1]} cluster {dst}, and ferry "
                f"has no such path (a Proxmox archive is restored in its own cluster); pin the containers "
                f"to nodes of {src} or allow only crossings onto Proxmox from OpenVZ")

    def _actor(self, spec: MoveSpec) -> Any:
        src, dst = self.mixed._cluster(spec.source), self.mixed._cluster(spec.target)
        if src == dst:
            return self.mixed.members[src].restores()
        why = self.path_refusal(spec.source, spec.target)
        if why:
            raise RefusedError(why)
        if (src, dst) not in self._paths:
            self._paths[(src, dst)] = OpenVZBackupOntoProxmox(self.mixed.members[src], self.mixed.members[dst])
        return self._paths[(src, dst)]

    def list_backups(self, node: str, cts: list[str]) -> list[Backup]:
        return self._steps(node).list_backups(node, cts)

    def lost_containers(self, node: str, known: set[str]) -> list[Container]:
        return self._steps(node).lost_containers(node, known)

    def fence(self, spec: MoveSpec, ctx: StepContext) -> None:
        """The cluster's own fence where it has one, else adapters/restore.py's (the same rule)."""
        own = getattr(self._actor(spec), "fence", None)
        (own or super().fence)(spec, ctx)
