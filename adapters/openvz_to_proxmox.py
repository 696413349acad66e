"""A move from an OpenVZ node onto a Proxmox VE node: dump, transfer, restore converted, start.

    preflight  the CT exists on the OpenVZ node; the target node is a Proxmox node ferry reaches
               over SSH too ([proxmox.ssh]); the VMID is free (GET /cluster/nextid {vmid})
    prepare    <state_dir>/<CT>/ on the OpenVZ node: owner, whether the CT ran
    cutover    vzctl stop -> vzdump --compress --dumpdir DIR CT (OpenVZ node)
               -> rsync to the Proxmox node's ``local`` storage dump dir (/var/lib/vz/dump)
               -> POST /nodes/{node}/lxc {vmid, ostemplate=local:backup/<archive>, restore=1,
                  + the CT's config converted key by key (adapters/proxmox/from_openvz.py)}
               -> POST .../status/start (if the CT ran)
    verify     the copy runs (if the CT ran) with the expected addresses; the source is stopped
    cleanup    the source stays stopped and will not start at boot (ONBOOT=no) until
               ``openvz.retention_hours`` after prepare, then its private area and config go;
               the archives are removed at once
    rollback   the copy is stopped and destroyed; the source starts again if it ran

This is what the Proxmox VE documentation prescribes for bringing OpenVZ containers over (wiki
"Convert OpenVZ to LXC", https://pve.proxmox.com/wiki/Convert_OpenVZ_to_LXC: back the container
up with vzdump on the OpenVZ host, copy the archive to the Proxmox host, ``pct restore`` it, and
configure its network anew, since LXC has no venet), done through the API ``pct restore`` itself
calls. pve-container converts an OpenVZ archive's ``etc/vzdump/vps.conf`` only partly
(src/PVE/VZDump/ConvertOVZ.pm ``convert_ovz``: memory, swap, cpulimit, hostname, rootfs size),
so ferry sends every converted key itself (from_openvz.restore_params) and the request, not the
archive, says what the copy is. Every command (SSH) and call (API) goes to the move's journal.
"""

from __future__ import annotations

import re
import shlex
import time

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
from adapters.openvz import inventory as ovz
from adapters.openvz.backend import OpenVZBackend
from adapters.proxmox import observe
from adapters.proxmox.backend import ProxmoxBackend
from adapters.proxmox.client import Api, ApiFailure
from adapters.proxmox.dump import destroy_copy
from adapters.proxmox.from_openvz import RestoreTarget, restore_params
from adapters.proxmox.guestops import MoveContext, ensure_power, wait_unlocked

#: The Proxmox storage the archive lands in: ``local`` (a dir storage on /var/lib/vz whose
#: backups live in /var/lib/vz/dump, the default of every Proxmox VE node) at
#: ``[proxmox.ssh] dump_dir``.
ARCHIVE_STORAGE = "local"


def marker(ct: str) -> str:
    """The tag of the restored copy, so every step finds it instead of remembering it."""
    return f"ferry-from-openvz-{ct}"


class OpenVZToProxmox:
    """The steps of one OpenVZ -> Proxmox move (module doc), over the two backends' access."""

    def __init__(self, openvz: OpenVZBackend, proxmox: ProxmoxBackend) -> None:
        if proxmox.shell is None:
            raise PermanentError("a move onto Proxmox from OpenVZ needs [proxmox.ssh] (the archive "
                                 "is copied to the Proxmox node over SSH)")
        self.ovz, self.pve = openvz, proxmox

    # ------------------------------------------------------------------ helpers
    def _mc(self, spec: MoveSpec, ctx: StepContext) -> MoveContext:
        return MoveContext(Api(self.pve.client, ctx.journal), self.pve.settings, spec, ctx)

    def _run(self, node: str, argv: list[str], ctx: StepContext, **kw):
        return self.ovz.shell.run(node, argv, ctx.journal, **kw)

    def _restored(self, spec: MoveSpec, api: Api) -> observe.Placement | None:
        return observe.find_tagged(api, marker(spec.ct))

    def _conf(self, spec: MoveSpec, ctx: StepContext) -> dict[str, str]:
        return self.ovz._source_conf(spec, ctx)

    def _target(self, spec: MoveSpec, mc: MoveContext, conf: dict[str, str], archive: str) -> RestoreTarget:
        vmid = int(spec.target_ct or spec.ct)
        try:
            mc.api.get("/cluster/nextid", vmid=vmid)
        except ApiFailure:
            vmid = int(mc.api.get("/cluster/nextid"))
        ips = tuple(spec.ips or ovz.ips_of(conf))
        if any("/" not in ip for ip in ips):
            raise PermanentError(f"CT {spec.ct}: a bridged interface needs its address with the prefix "
                                 f"length (venet has none): declare its subnet in [networks] so the plan "
                                 f"gives it one, got {list(ips)}")
        storage = spec.target_storage or self.pve.settings.storage_map.get(ovz.STORAGE_ID, "local-lvm")
        return RestoreTarget(vmid=vmid, archive=f"{ARCHIVE_STORAGE}:backup/{archive}", storage=storage,
                             ips=ips, gateway=spec.gateway)

    # ------------------------------------------------------------------ steps
    def observe(self, spec: MoveSpec) -> Observation:
        ctx = StepContext(journal=self.pve.journal)
        source = self.ovz._status(spec.source, spec.ct, ctx)
        copy = self._restored(spec, Api(self.pve.client, self.pve.journal))
        target = Copy(spec.target, spec.dest_ct, "absent") if copy is None else Copy(
            copy.node, str(copy.vmid), "partial" if copy.lock == "create" else copy.status)
        return Observation(source=Copy(spec.source, spec.ct, source), target=target)  # type: ignore[arg-type]

    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        if spec.method != "dump":  # the engine falls back to dump
            raise RefusedError("a move from OpenVZ onto Proxmox runs by dump only")
        status = self.ovz._status(spec.source, spec.ct, ctx)
        checks = [Check("container exists", status != "absent", f"CT {spec.ct} on {spec.source}")]
        if status == "absent":
            return checks
        ips = list(spec.ips or ovz.ips_of(self._conf(spec, ctx)))
        checks.append(Check("addresses for a bridge", all("/" in ip for ip in ips),
                            f"{ips}: venet addresses have no prefix length; declare the subnet in "
                            f"[networks] so the plan writes them with prefix and gateway"))
        ssh = self.pve.settings.ssh
        checks.append(Check("SSH to the Proxmox node", spec.target in ssh.nodes,
                            f"add {spec.target} to [proxmox.ssh.nodes]"))
        mc = self._mc(spec, ctx)
        nodes = {row["node"]: row for row in mc.api.get("/cluster/resources", type="node")}
        checks.append(Check("target node online", nodes.get(spec.target, {}).get("status") == "online",
                            f"{spec.target} is {nodes.get(spec.target, {}).get('status', 'not in the cluster')}"))
        return checks

    def prepare(self, spec: MoveSpec, ctx: StepContext) -> None:
        running = self.ovz._status(spec.source, spec.ct, ctx) == "running"
        script = ('mkdir -p "$1" && { [ -e "$1/prepared" ] || { [ "$2" = 1 ] && touch "$1/source_running"; '
                  'printf "%s\\n" "$3" > "$1/owner"; touch "$1/prepared"; }; }')
        self._run(spec.source, ["sh", "-c", script, "ferry", self.ovz._state(spec), str(int(running)),
                                spec.owner], ctx)

    def presync(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Nothing to copy ahead: the archive is made from the stopped container."""

    def cutover(self, spec: MoveSpec, ctx: StepContext) -> None:
        if spec.method != "dump":
            raise RefusedError("a move from OpenVZ onto Proxmox runs by dump only")
        mc = self._mc(spec, ctx)
        copy = self._restored(spec, mc.api)
        if copy is None:
            conf = self._conf(spec, ctx)
            if self.ovz._status(spec.source, spec.ct, ctx) == "running":
                self._run(spec.source, ["vzctl", "stop", spec.ct], ctx)
            archive = self._dump_and_send(spec, ctx)
            target = self._target(spec, mc, conf, archive)
            params = {**restore_params(conf, target), "tags": marker(spec.ct)}
            mc.event("restore converted", vmid=target.vmid, archive=target.archive)
            mc.run(mc.api.post(f"/nodes/{spec.target}/lxc", **params))
            ctx.figures["target_vmid"] = float(target.vmid)
            copy = self._restored(spec, mc.api)
            if copy is None:
                raise PermanentError(f"the restore of CT {spec.ct} left no container tagged {marker(spec.ct)}")
        wait_unlocked(mc, copy.node, copy.vmid)
        if self.ovz._marker(spec, "source_running", ctx):
            ensure_power(mc, copy.node, copy.vmid, "running")

    def _dump_and_send(self, spec: MoveSpec, ctx: StepContext) -> str:
        """vzdump on the OpenVZ node, the archive rsynced to the Proxmox node; its file name."""
        ovz_dir, pve = self.ovz.settings.dump_dir, self.pve.settings.ssh
        out = self._run(spec.source, ["vzdump", "--compress", "--dumpdir", ovz_dir, spec.ct], ctx).out
        found = re.search(r"creating archive '([^']+)'", out)
        if not found:
            raise PermanentError(f"vzdump on {spec.source} did not say where it wrote the archive: {out[-200:]}")
        archive, access = found.group(1), pve.nodes[spec.target]
        ssh = shlex.join(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", str(access.port)])
        cap = [f"--bwlimit={spec.bwlimit_kib}"] if spec.bwlimit_kib else []
        self._run(spec.source, ["rsync", "-a", *cap, "--mkpath", "-e", ssh, archive,
                                f"{access.user}@{access.host}:{pve.dump_dir}/"], ctx)
        self._run(spec.source, ["rm", "-f", archive], ctx)
        return archive.rsplit("/", 1)[-1]

    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        mc = self._mc(spec, ctx)
        copy = self._restored(spec, mc.api)
        want = "running" if self.ovz._marker(spec, "source_running", ctx) else "stopped"
        if copy is None or copy.node != spec.target or copy.status != want:
            raise PermanentError(f"no {want} copy of CT {spec.ct} on {spec.target}")
        expected = [ip.split("/")[0] for ip in (spec.ips or ovz.ips_of(self._conf(spec, ctx)))]
        found = observe.config_ips(observe.config(mc.api, copy.node, copy.vmid))
        if found != expected:
            raise PermanentError(f"copy {copy.vmid} has addresses {found}, expected {expected}")
        if self.ovz._status(spec.source, spec.ct, ctx) == "running":
            raise PermanentError(f"CT {spec.ct} runs again on {spec.source}; two copies would share addresses")

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Keep the source stopped (never started at boot) until its retention ends, then retire
        it; remove the archive on the Proxmox node."""
        state, pve = self.ovz._state(spec), self.pve.settings.ssh
        self.pve.shell.run(spec.target, ["sh", "-c", 'rm -f "$1"/vzdump-openvz-"$2"-*', "ferry",
                                         pve.dump_dir, spec.ct], ctx.journal)
        if self.ovz._status(spec.source, spec.ct, ctx) == "running":
            raise PermanentError(f"CT {spec.ct} runs on {spec.source}; not retiring it")
        if self.ovz._status(spec.source, spec.ct, ctx) == "stopped":
            self._run(spec.source, ["vzctl", "set", spec.ct, "--onboot", "no", "--save"], ctx)
        words = self._run(spec.source, ["sh", "-c", 'cd "$1" 2>/dev/null && echo $(date +%s) '
                                        '$(stat -c %Y prepared)', "ferry", state], ctx).out.split()
        if len(words) == 2:
            due = int(words[1]) + self.ovz.settings.retention_hours * 3600
            if int(words[0]) < due:
                raise CleanupPending(f"source CT {spec.ct} kept stopped on {spec.source} until "
                                     f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(due))} (retention)")
        conf = self.ovz._conf(spec.source, spec.ct, ctx)
        if conf is not None:
            self._run(spec.source, ["rm", "-rf", "--one-file-system", self.ovz._private(conf, spec.ct),
                                    f"/etc/vz/conf/{spec.ct}.conf"], ctx)
        self._run(spec.source, ["rm", "-rf", state], ctx)

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        mc = self._mc(spec, ctx)
        destroy_copy(mc, self._restored(spec, mc.api))
        if self.ovz._marker(spec, "source_running", ctx) and self.ovz._status(spec.source, spec.ct, ctx) == "stopped":
            self._run(spec.source, ["vzctl", "start", spec.ct], ctx)
        self._run(spec.source, ["rm", "-rf", self.ovz._state(spec)], ctx)
