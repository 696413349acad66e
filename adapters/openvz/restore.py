"""Restores from vzdump archives on OpenVZ, when a node is dead (adapters/restore.py's steps).

    preflight: the destination answers, the dead node does not, the archive is there, the CT id
               is free on the destination (or the restore there is ours), the destination
               reaches the backup host, and has room for the archive
    fence:     adapters/restore.py (the operator's word or the fence command)
    restore:   on the destination: record the restore (<state_dir>/restore-CT/owner), fetch the
               archive from the backup host (rsync, ``--bwlimit``; its temporary file is renamed
               only when complete), then ``vzrestore ARCHIVE CT``
               where the node has it, else unpack it as vzrestore does (tar into the private area,
               ``etc/vzdump/vps.conf`` -> /etc/vz/conf/CT.conf with this node's VE_ROOT/VE_PRIVATE),
               then mark it ``restored``; stopped
    start:     ``vzctl start`` (which adds the addresses and announces them), only once fenced
    verify:    the copy runs, and every port it listens on answers on its address
    cleanup:   the dead node still down: CleanupPending. Back: its copy is stopped if it runs,
               ONBOOT="no" and ``ferry-stale`` in its DESCRIPTION (``vzctl set --save``); never
               destroyed: the operator removes it (``ferry recovery stale``)
    rollback:  the restored copy stopped and removed, if the record says the restore was ours

Every step observes the nodes first (the record on the destination, ``vzctl status``), so a
restore resumes after a crash: a partial unpack (record without ``restored``) is removed and done
again; a finished one is kept. The fetch and the unpack hold a lock on the destination (flock on
the record), so a command left running by a ferry that died is waited for, never raced. The dead
node is never asked anything but "do you answer".
"""

from __future__ import annotations

import re
import shlex

from adapters.base import Check, CleanupPending, Copy, MoveSpec, Observation, PermanentError, StepContext
from adapters.openvz import forwarding, inventory
from adapters.openvz.backups import BACKUP_HOST, ArchiveStore, with_backup_host
from adapters.openvz.settings import OpenVZSettings
from adapters.openvz.ssh import Result, Shell
from adapters.openvz.transfer import bwlimit, ssh_command
from adapters.restore import STALE_MARK, Backup, RestoreSteps
from fleet.model import Container

#: Unpack an archive as vzrestore does: $1 archive, $2 private area, $3 config, $4 VE_ROOT and $5
#: VE_PRIVATE templates of this node. The config is installed last (via a temporary name).
UNPACK = ('rm -rf "$2" && mkdir -p "$2" && tar -xpf "$1" --numeric-owner -C "$2" && '
          'sed -e "s|^VE_ROOT=.*|VE_ROOT=\\"$4\\"|" -e "s|^VE_PRIVATE=.*|VE_PRIVATE=\\"$5\\"|" '
          '"$2/etc/vzdump/vps.conf" > "$3.ferry" && mv -f "$3.ferry" "$3" && rm -rf "$2/etc/vzdump"')
#: vzrestore where the node has it ($6 the CT id), else UNPACK.
RESTORE = ('rm -f "$3"; if command -v vzrestore >/dev/null 2>&1; then rm -rf "$2" && vzrestore "$1" "$6"; '
           f'else {UNPACK}; fi')
DEFAULT_PRIVATE, DEFAULT_ROOT = "/var/lib/vz/private/$VEID", "/vz/root/$VEID"
_TEMPLATE = re.compile(r"/[A-Za-z0-9._/-]*(\$VEID|\$\{VEID\})?[A-Za-z0-9._/-]*")


class OpenVZRestore(RestoreSteps):
    """Restores over SSH from ``[openvz.backups]`` (module doc)."""

    def __init__(self, settings: OpenVZSettings, shell: Shell | None = None) -> None:
        self.settings = with_backup_host(settings)
        self.shell = shell or Shell(self.settings)
        self._store: ArchiveStore | None = None

    @property
    def store(self) -> ArchiveStore:
        if self._store is None:
            self._store = ArchiveStore(self.settings, self.shell)
        return self._store

    # -- helpers -----------------------------------------------------------------------------------
    def _run(self, node: str, argv: list[str], ctx: StepContext, **kw) -> Result:
        return self.shell.run(node, argv, ctx.journal, **kw)

    def _record(self, spec: MoveSpec) -> str:
        return f"{self.settings.state_dir}/restore-{spec.dest_ct}"

    def _facts(self, spec: MoveSpec, ctx: StepContext) -> tuple[str, bool, bool]:
        """On the destination: ``vzctl status`` (absent/stopped/running), our record, ``restored``."""
        script = ('vzctl status "$1" 2>/dev/null; [ -e "$2/owner" ] && echo OURS; '
                  '[ -e "$2/restored" ] && echo RESTORED; true')
        out = self._run(spec.target, ["sh", "-c", script, "ferry", spec.dest_ct, self._record(spec)], ctx).out
        words = out.split()
        status = "absent" if words[2:3] != ["exist"] else "running" if "running" in words[4:5] else "stopped"
        return status, "OURS" in words, "RESTORED" in words

    def _templates(self, spec: MoveSpec, ctx: StepContext) -> tuple[str, str]:
        """This destination's VE_PRIVATE and VE_ROOT templates (/etc/vz/vz.conf), as vzrestore reads."""
        conf = inventory.parse_conf(self._run(spec.target, ["cat", "/etc/vz/vz.conf"], ctx, check=False).out)
        private, root = conf.get("VE_PRIVATE") or DEFAULT_PRIVATE, conf.get("VE_ROOT") or DEFAULT_ROOT
        for key, value in (("VE_PRIVATE", private), ("VE_ROOT", root)):
            if not _TEMPLATE.fullmatch(value):  # it goes into UNPACK's sed expression
                raise PermanentError(f"{spec.target}: /etc/vz/vz.conf {key}={value!r} is not a plain path")
        return private, root

    def _private(self, spec: MoveSpec, ctx: StepContext) -> str:
        return self._templates(spec, ctx)[0].replace("$VEID", spec.dest_ct).replace("${VEID}", spec.dest_ct)

    def _locked(self, spec: MoveSpec, argv: list[str]) -> list[str]:
        """``argv`` under the restore's lock on the destination. A ferry that died mid-step leaves
        its remote command running (nothing reads its output, so nothing stops it); the resumed
        step waits for it instead of fetching or unpacking into the same files at the same time."""
        wait = str(int(self.settings.command_timeout_s))
        return ["flock", "-w", wait, f"{self._record(spec)}/lock", *argv]

    def _local_archive(self, spec: MoveSpec) -> str:
        """Where the destination reads the archive: fetched into dump_dir, or the shared path."""
        archive = str(spec.archive)
        if self.store.location.host is None:
            return archive
        return f"{self.settings.dump_dir}/{archive.rsplit('/', 1)[-1]}"

    # -- reading -----------------------------------------------------------------------------------
    def list_backups(self, node: str, cts: list[str]) -> list[Backup]:
        wanted = set(cts)
        return [b for b in self.store.archives(node) if b.ct in wanted]

    def lost_containers(self, node: str, known: set[str]) -> list[Container]:
        return self.store.lost_containers(node, known)

    def observe(self, spec: MoveSpec) -> Observation:
        ctx = StepContext()
        source = Copy(spec.source, spec.ct, "unknown")
        if self.store.reachable(spec.source):
            conf = self._run(spec.source, ["cat", f"/etc/vz/conf/{spec.ct}.conf"], ctx, check=False)
            res = self._run(spec.source, ["vzctl", "status", spec.ct], ctx, check=False)
            status = inventory.ct_status(spec.source, spec.ct, res.out, res.status, res.err)
            source = Copy(spec.source, spec.ct, status,
                          inventory.serving_ips(status, inventory.parse_conf(conf.out) if conf.ok else None))
        status, ours, restored = self._facts(spec, ctx)
        if ours and not restored:
            status = "partial"
        conf = self._run(spec.target, ["cat", f"/etc/vz/conf/{spec.dest_ct}.conf"], ctx, check=False)
        ips = inventory.serving_ips(status, inventory.parse_conf(conf.out) if conf.ok else None)
        return Observation(source, Copy(spec.target, spec.dest_ct, status, ips))

    # -- steps -------------------------------------------------------------------------------------
    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        status, ours, _ = self._facts(spec, ctx)
        leftover = self._run(spec.target, ["sh", "-c", '[ -e "$1" ] || [ -e "$2" ]', "ferry", self._private(spec, ctx),
                                           f"/etc/vz/conf/{spec.dest_ct}.conf.migrated"], ctx, check=False).ok
        checks = [Check("source down", not self.store.reachable(spec.source, ctx.journal),
                        f"{spec.source} answers again: evacuate it instead of restoring"),
                  Check("target id free", ours or (status == "absent" and not leftover),
                        f"CT {spec.dest_ct} (or its private area, or a migrated-away copy) exists on "
                        f"{spec.target} and is not a restore of ferry's")]
        found = {b.archive: b for b in self.store.archives(spec.source, ctx.journal)}.get(str(spec.archive))
        checks.append(Check("archive exists", found is not None, f"no archive {spec.archive} of CT {spec.ct}"))
        if self.store.location.host is not None:
            host = self.store.location.host
            reach = self._run(spec.target, [*shlex.split(ssh_command(self.settings, BACKUP_HOST)),
                                            f"{host.user}@{host.host}", "true"], ctx, check=False, timeout=60)
            checks.append(Check("backup host reachable", reach.ok,
                                f"{spec.target} cannot log in to {host.host} (its key, known_hosts)"))
        if found is not None:
            free = self._run(spec.target, ["df", "-Pk", "/var/lib/vz"], ctx, check=False).out.split()
            need_kib = found.bytes * (2 + self.settings.free_space_margin) // 1024  # archive + unpacked
            checks.append(Check("free space", len(free) > 10 and int(free[10]) >= need_kib,
                                f"{spec.target} has {free[10] if len(free) > 10 else '?'} KiB free, "
                                f"needs {need_kib} KiB for {spec.archive}"))
        return checks

    def restore(self, spec: MoveSpec, ctx: StepContext) -> None:
        status, ours, restored = self._facts(spec, ctx)
        if ours and restored:
            return  # restored before a crash
        if status != "absent" and not ours:
            raise PermanentError(f"CT {spec.dest_ct} exists on {spec.target}; not overwriting it")
        record = self._record(spec)
        self._run(spec.target, ["sh", "-c", 'mkdir -p "$1" && printf "%s\\n" "$2" > "$1/owner"', "ferry",
                                record, spec.owner], ctx)
        local = self._local_archive(spec)
        if local != spec.archive:
            self._fetch(spec, local, ctx)
        private_tpl, root_tpl = self._templates(spec, ctx)
        private = private_tpl.replace("$VEID", spec.dest_ct).replace("${VEID}", spec.dest_ct)
        self._run(spec.target, self._locked(spec, ["sh", "-c", RESTORE, "ferry", local, private,
                                                    f"/etc/vz/conf/{spec.dest_ct}.conf", root_tpl, private_tpl,
                                                    spec.dest_ct]), ctx, timeout=self.settings.command_timeout_s)
        if local != spec.archive:
            self._run(spec.target, ["rm", "-f", local], ctx, check=False)
        self._run(spec.target, ["touch", f"{record}/restored"], ctx)
        ctx.figures["bytes"] = ctx.figures.get("bytes", 0.0) + float(self._size(spec, ctx))

    def _fetch(self, spec: MoveSpec, local: str, ctx: StepContext) -> None:
        """The archive from the backup host onto the destination (rsync resumes a partial copy)."""
        host = self.store.location.host
        assert host is not None
        argv = ["rsync", "-a", *bwlimit(spec.bwlimit_kib), "--mkpath", "-e",
                ssh_command(self.settings, BACKUP_HOST), f"{host.user}@{host.host}:{spec.archive}", local]
        res = self._run(spec.target, self._locked(spec, argv), ctx, check=False)
        if res.status != 0:
            raise PermanentError(f"fetching {spec.archive} from {host.host} to {spec.target} failed "
                                 f"(exit {res.status}): {res.err.strip()[-200:]}")

    def _size(self, spec: MoveSpec, ctx: StepContext) -> int:
        found = {b.archive: b.bytes for b in self.store.archives(spec.source, ctx.journal)}
        return found.get(str(spec.archive), 0)

    def start(self, spec: MoveSpec, ctx: StepContext) -> None:
        if not spec.fenced and not spec.fence_command:  # the saga fences first; never start without
            raise PermanentError(f"{spec.source} is not fenced: CT {spec.ct} is not started")
        status, ours, restored = self._facts(spec, ctx)
        if not (ours and restored):
            raise PermanentError(f"CT {spec.dest_ct} is not restored on {spec.target}")
        if status != "running":
            self._run(spec.target, ["vzctl", "start", spec.dest_ct], ctx, timeout=120)

    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        status, _, _ = self._facts(spec, ctx)
        if status != "running":
            raise PermanentError(f"CT {spec.dest_ct} is {status} on {spec.target}, expected running")
        conf = inventory.parse_conf(self._run(spec.target, ["cat", f"/etc/vz/conf/{spec.dest_ct}.conf"], ctx).out)
        ips = inventory.ips_of(conf)
        tcp = self._run(spec.target, ["vzctl", "exec", spec.dest_ct, "cat", "/proc/net/tcp"], ctx, check=False)
        for port in forwarding.listening_ports(tcp.out, ips) if tcp.ok and ips else []:
            res = self._run(spec.target, ["sh", "-c", forwarding.WAIT_PORT, "ferry", ips[0], str(port)], ctx,
                            check=False, timeout=30)
            if not res.ok:
                raise PermanentError(f"{ips[0]}:{port} of CT {spec.dest_ct} does not answer on {spec.target}")

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        if not self.store.reachable(spec.source, ctx.journal):
            raise CleanupPending(f"{spec.source} is still down: its copy of CT {spec.ct} is checked when it "
                                 "comes back")
        conf = self._run(spec.source, ["cat", f"/etc/vz/conf/{spec.ct}.conf"], ctx, check=False)
        if conf.ok:
            self._keep_stopped(spec, inventory.parse_conf(conf.out), ctx)
            ctx.figures["stale_copies"] = 1.0
        self._run(spec.target, ["rm", "-rf", self._record(spec)], ctx)

    def _keep_stopped(self, spec: MoveSpec, conf: dict[str, str], ctx: StepContext) -> None:
        """The returned node's copy: stopped, not started on boot, marked; its data kept."""
        res = self._run(spec.source, ["vzctl", "status", spec.ct], ctx, check=False)
        if inventory.ct_status(spec.source, spec.ct, res.out, res.status, res.err) == "running":
            self._run(spec.source, ["vzctl", "stop", spec.ct], ctx, timeout=120)
        words = conf.get("DESCRIPTION", "").split()
        if conf.get("ONBOOT") != "no" or STALE_MARK not in words:
            marked = " ".join([w for w in words if w != STALE_MARK] + [STALE_MARK])
            self._run(spec.source, ["vzctl", "set", spec.ct, "--onboot", "no", "--description", marked,
                                    "--save"], ctx)

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        status, ours, _ = self._facts(spec, ctx)
        if not ours:
            return  # nothing of ours on the destination (the dead node's copy is never touched)
        if status == "running":
            self._run(spec.target, ["vzctl", "stop", spec.dest_ct], ctx, timeout=120)
        leftovers = [self._private(spec, ctx), f"/etc/vz/conf/{spec.dest_ct}.conf", f"/etc/vz/conf/{spec.dest_ct}.conf.ferry"]
        if self._local_archive(spec) != spec.archive:
            leftovers.append(self._local_archive(spec))
        self._run(spec.target, ["rm", "-rf", "--one-file-system", *leftovers, self._record(spec)], ctx)
