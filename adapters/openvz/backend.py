"""The OpenVZ backend: the steps of a move, each observing the nodes before acting.

    live:    preflight -> prepare -> (presync: no-op) -> cutover: vzmigrate --live -r no --keep-dst
    restart: preflight -> prepare -> presync: rsync rounds -> cutover: hold clients; in one call
             stop the source + final pass over what changed (delta.py); start, arping
    dump:    ... cutover: vzdump --compress -> copy -> vzdump --restore (instead of rsync)
    then:    verify -> cleanup (what is due; CleanupPending names the rest) | rollback
             (teardown.py); what the steps observe with, and discover/observe: observe.py

The default of vzmigrate (``-r yes``) destroys the source area; ferry always passes ``-r no``
(source config kept as ``CTID.conf.migrated``, bin/vzmigrate.in) and ``--keep-dst``, and its
restart path renames the stopped source's config the same way, so no one starts it by accident
and rollback can bring it back. Per-move state lives on the source node under
``<state_dir>/<CT>/`` (see forwarding.py), never only in ferry's memory.
"""

from __future__ import annotations

import shlex
import time

from adapters.base import Check, MoveSpec, PermanentError, RefusedError, StepContext, TransientError
from adapters.openvz import delta, forwarding, inventory, readdress, teardown, transfer
from adapters.openvz.checks import VZMIGRATE_EXIT, Preflight
from adapters.openvz.observe import ObservingBackend
from adapters.openvz.restore import OpenVZRestore

_REFUSED = {14, 16, 17, 18, 8}  # vzmigrate: no CPT, ploop, CPT version, CPU, checkpoint failed


_NO_RENUMBER = "vzmigrate --live cannot renumber or readdress a container"


class OpenVZBackend(ObservingBackend):
    """Moves between OpenVZ nodes over SSH. Honours every request, but a node has one storage
    (``vz``: /var/lib/vz), so ``target_storage`` can only name that one, and a live move cannot
    readdress (the engine then falls back to the restart path). The bandwidth cap becomes
    rsync's ``--bwlimit`` on every copy (transfer.py, delta.py)."""

    name = "openvz"

    def refusals(self, spec: MoveSpec) -> dict[str, str]:
        refused = {}
        if spec.target_storage not in (None, inventory.STORAGE_ID):
            refused["target_storage"] = (f"the OpenVZ backend has no storage ids but "
                                         f"'{inventory.STORAGE_ID}' (/var/lib/vz on each node)")
        if spec.method == "live":
            refused.update(dict.fromkeys(set(spec.requested()) & {"target_ct", "ips", "gateway", "hostname"},
                                         _NO_RENUMBER))
        return refused

    # ---------------------------------------------------------------- steps
    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        conf = self._conf(spec.source, spec.ct, ctx)
        return Preflight(self.shell, self.settings, spec, ctx.journal,
                         self._private(conf, spec.ct)).all()

    def prepare(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Record the move on the source node (``<state_dir>/<CT>/``): its owner, whether the
        source ran, whether the destination id was free. Another owner's record means another
        job is moving the container: wait for it (TransientError), never share its state."""
        state = self._state(spec)
        found = self._run(spec.source, ["sh", "-c", 'cat "$1/owner" 2>/dev/null; [ -e "$1/prepared" ] '
                                        '&& echo prepared; true', "ferry", state], ctx).out.split()
        holder = found[0] if found and found[0] != "prepared" else ""
        if holder and holder != spec.owner:
            raise TransientError(f"CT {spec.ct} is being moved by {holder} (state in "
                                 f"{state} on {spec.source})")
        if found[-1:] != ["prepared"]:
            self._record_move(spec, ctx)
        self._lower_dns(spec, ctx)

    def _record_move(self, spec: MoveSpec, ctx: StepContext) -> None:
        state = self._state(spec)
        running = self._status(spec.source, spec.ct, ctx) == "running"
        target_free = self._status(spec.target, spec.dest_ct, ctx) == "absent"
        script = ('mkdir -p "$1" && { [ "$2" = 1 ] && touch "$1/source_running"; '
                  '[ "$3" = 1 ] && touch "$1/target_ours"; printf "%s\\n" "$4" > "$1/owner" && '
                  'touch "$1/prepared"; }')
        self._run(spec.source, ["sh", "-c", script, "ferry", state, str(int(running)),
                                str(int(target_free)), spec.owner], ctx)

    def _lower_dns(self, spec: MoveSpec, ctx: StepContext) -> None:
        """A move to a new address first lowers its record's TTL and waits the old one out
        (readdress.py), so that clients move on soon after the switch."""
        if self.records is None or not spec.ips:
            return
        conf = self._source_conf(spec, ctx)
        if spec.ips[0] in inventory.ips_of(conf):
            return
        hostname = conf.get("HOSTNAME") or None
        ctx.figures["dns_wait_s"] = readdress.lower_ahead(
            self.shell, self.records, spec.source, self._state(spec), spec.ct, hostname,
            ctx.journal, ctx.cancelled)

    def presync(self, spec: MoveSpec, ctx: StepContext) -> None:
        if spec.method != "restart" or self._status(spec.target, spec.dest_ct, ctx) == "running":
            return
        conf = self._source_conf(spec, ctx)
        state, dst = self._state(spec), self._private(None, spec.dest_ct)
        transfer.presync(self.shell, self.settings, spec.source, spec.target,
                         self._private(conf, spec.ct), dst, ctx.journal, ctx.figures,
                         lambda: delta.mark(self.shell, spec.source, state, ctx.journal),
                         bwlimit_kib=spec.bwlimit_kib)
        delta.list_destination(self.shell, self.settings, spec.source, spec.target, state, dst,
                               ctx.journal)

    def cutover(self, spec: MoveSpec, ctx: StepContext) -> None:
        if self._status(spec.target, spec.dest_ct, ctx) == "running":
            if self._status(spec.source, spec.ct, ctx) == "running":
                raise PermanentError(f"CT {spec.ct} runs on both {spec.source} and {spec.target}")
            if spec.method != "live":  # a resumed cutover: finish the tail of the switch
                conf = self._source_conf(spec, ctx)
                old_ips, new_ips = inventory.ips_of(conf), self._new_ips(spec, conf)
                self._after_switch(spec, bool(old_ips) and new_ips != old_ips, old_ips, new_ips,
                                   ctx)
            return
        if spec.method == "live":
            return self._live(spec, ctx)
        return self._restart(spec, ctx)

    def _live(self, spec: MoveSpec, ctx: StepContext) -> None:
        if spec.ips or spec.hostname or spec.dest_ct != spec.ct:
            raise RefusedError(_NO_RENUMBER)
        host = self.settings.nodes[spec.target].host
        started = time.monotonic()
        res = self._run(spec.source, ["vzmigrate", "--live", "-r", "no", "--keep-dst", host,
                                      spec.ct], ctx, check=False)
        if res.ok:
            ctx.figures["live_s"] = time.monotonic() - started
            return
        why = f"vzmigrate --live exited {res.status} ({VZMIGRATE_EXIT.get(res.status, '?')}): " \
              f"{res.err.strip()[-200:]}"
        if res.status in _REFUSED:
            raise RefusedError(why)
        if res.status in (4, 20):
            raise TransientError(why)
        raise PermanentError(why)

    def _restart(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Hold clients, stop the source, copy the rest, start the destination, release clients.

        Everything that does not need the source stopped (destination config, the hold/gate
        rules, the forwarders) happens before the stop, so the downtime is the final delta plus
        the start. Level-triggered: after a crash the source may already be stopped; the ports
        and the hold were recorded on the source node (``<state>/ports``) and are read back.
        """
        conf = self._source_conf(spec, ctx)
        old_ips, new_ips = inventory.ips_of(conf), self._new_ips(spec, conf)
        changed = bool(old_ips) and new_ips != old_ips
        state = self._state(spec)
        was_running = self._marker(spec, "source_running", ctx)  # a stopped CT stays stopped
        staged = False
        switch: list[list[str]] = []  # source-side commands run with the final copy
        if self._status(spec.source, spec.ct, ctx) == "running":
            if spec.method != "dump":
                self._stage_config(spec, new_ips, ctx)
                staged = True
            ports, kept, switch = self._hold_clients(spec, old_ips, new_ips, changed, ctx)
            switch.append(["vzctl", "stop", spec.ct])
            if changed and ports and kept:
                switch.append(forwarding.keep_command(state, old_ips[0], kept))
        else:
            ports = [int(p) for p in self._read_state(spec, "ports", ctx).split()]
        stopped_at = time.monotonic()  # from here on, only what needs the source stopped
        self._copy(spec, conf, new_ips, ctx, staged, switch)
        if was_running:
            self._start_destination(spec, new_ips, ports, ctx)
        ctx.figures["downtime_s"] = time.monotonic() - stopped_at
        self._after_switch(spec, changed, old_ips, new_ips, ctx)

    def _hold_clients(self, spec: MoveSpec, old_ips: list[str], new_ips: list[str],
                      changed: bool, ctx: StepContext) -> tuple[list[int], str, list[list[str]]]:
        """Make new clients wait instead of failing while nothing serves (forwarding.py).
        Returns the ports held, the interface that held the old address, and the source-side
        commands still due right before the stop (run in the same call as the stop and the
        final copy: every SSH round trip there is downtime)."""
        ports = self._ports(spec, old_ips, ctx)
        kept = forwarding.where(self.shell, spec.source, old_ips[0], ctx.journal) if old_ips else None
        self._run(spec.source, ["sh", "-c", 'printf "%s\\n" "$2" > "$1/ports"', "ferry",
                                self._state(spec), " ".join(map(str, ports))], ctx)
        udp = self._ports(spec, old_ips, ctx, udp=True) if changed else []
        if not ports and not udp:
            return ports, "", []
        wait = ["sleep", "0.02"]  # let requests already inside the container finish
        if changed:
            forwarding.start_forwarders(self.shell, spec.source, spec.ct, self._state(spec),
                                        old_ips[0], new_ips[0], ports,
                                        self.settings.forward_seconds,
                                        self.settings.hold_seconds, ctx.journal,
                                        self.settings.forward_quiet_s, udp_ports=udp)
            return ports, kept[0] if kept else "", [wait]
        forwarding.gate(self.shell, spec.target, spec.ct, new_ips[0], ports, ctx.journal)
        return ports, kept[0] if kept else "", [forwarding.gate_command(spec.ct, old_ips[0],
                                                                        ports), wait]

    def _start_destination(self, spec: MoveSpec, ips: list[str], ports: list[int],
                           ctx: StepContext) -> None:
        """Start, wait until every port answers on the node, open the gate, announce (one call:
        each SSH round trip here is downtime)."""
        targets = [f"{ips[0]}:{port}" for port in ports] if ips else []
        self._run(spec.target, ["sh", "-c", forwarding.START, "ferry", spec.dest_ct, forwarding.tag(spec.ct),
                                *targets, "--", *ips], ctx, timeout=60)

    def _after_switch(self, spec: MoveSpec, changed: bool, old_ips: list[str],
                      new_ips: list[str], ctx: StepContext) -> None:
        """Idempotent tail of the switch, also run when a resumed cutover finds it done."""
        if not changed:  # the address lives on the new node now: no pause rules on the old one
            forwarding.stop_forwarders(self.shell, spec.source, spec.ct, self._state(spec),
                                       ctx.journal)
        forwarding.remove_rules(self.shell, spec.target, spec.ct, ctx.journal)
        self._run(spec.source, ["sh", "-c", '[ ! -f "$1" ] || mv -f "$1" "$1.migrated"', "ferry",
                                f"/etc/vz/conf/{spec.ct}.conf"], ctx)
        if changed and not self._marker(spec, "dns_done", ctx):
            forwarding.dns_hook(self.settings.dns_hook, old_ips[0], new_ips[0], ctx.journal)
            if self.records is not None:
                readdress.switch(self.shell, self.records, spec.source, self._state(spec),
                                 new_ips[0], ctx.journal)
            self._run(spec.source, ["touch", f"{self._state(spec)}/dns_done"], ctx)

    def _stage_config(self, spec: MoveSpec, new_ips: list[str], ctx: StepContext) -> None:
        """The destination config: the source's, with the new id's IPs and hostname."""
        text = self._run(spec.source, ["sh", "-c", 'cat "$1" 2>/dev/null || cat "$1.migrated"',
                                       "ferry", f"/etc/vz/conf/{spec.ct}.conf"], ctx).out
        self._run(spec.target, ["sh", "-c", 'mkdir -p "${1%/*}" && cat > "$1"', "ferry",
                                f"/etc/vz/conf/{spec.dest_ct}.conf"], ctx, stdin=text.encode())
        self._stage_ips(spec, new_ips, ctx)

    def _copy(self, spec: MoveSpec, conf: dict[str, str], new_ips: list[str], ctx: StepContext,
              staged: bool, switch: list[list[str]]) -> None:
        """Run ``switch`` (gate, stop) then bring the data over: the final pass over what changed
        (delta.py), a full rsync when there is no pre-copy to build on, or a vzdump archive."""
        prelude = " && ".join(shlex.join(argv) for argv in switch)
        if spec.method == "dump":
            if prelude:
                self._run(spec.source, ["sh", "-c", prelude], ctx)
            if self._status(spec.target, spec.dest_ct, ctx) == "absent":
                transfer.dump_and_restore(self.shell, self.settings, spec.source, spec.target,
                                          spec.ct, spec.dest_ct, ctx.journal,
                                          bwlimit_kib=spec.bwlimit_kib)
            self._stage_ips(spec, new_ips, ctx)
            return
        src, dst = self._private(conf, spec.ct), self._private(None, spec.dest_ct)
        sent = delta.final_pass(self.shell, self.settings, spec.source, spec.target,
                                self._state(spec), src, dst, ctx.journal, prelude,
                                bwlimit_kib=spec.bwlimit_kib)
        if sent is None:  # no pre-copy to build on: copy everything
            sent = transfer.rsync_once(self.shell, self.settings, spec.source, spec.target, src,
                                       dst, ctx.journal, bwlimit_kib=spec.bwlimit_kib)
        ctx.figures["final_bytes"] = float(sent)
        if not staged:
            self._stage_config(spec, new_ips, ctx)

    def _stage_ips(self, spec: MoveSpec, new_ips: list[str], ctx: StepContext) -> None:
        """vzctl set --ipdel all --ipadd ... [--hostname] --save (vzctl(8))."""
        argv = ["vzctl", "set", spec.dest_ct, "--ipdel", "all"]
        for ip in new_ips:
            argv += ["--ipadd", ip]
        if spec.hostname:
            argv += ["--hostname", spec.hostname]
        self._run(spec.target, argv + ["--save"], ctx)

    def _ports(self, spec: MoveSpec, ips: list[str], ctx: StepContext, udp: bool = False) -> list[int]:
        """The TCP ports to hold (``spec.ports``, else those the CT listens on), or with ``udp``
        the UDP ports its servers have bound (forwarded when the address changes)."""
        if spec.ports is not None and not udp:
            return list(spec.ports)
        table = "/proc/net/udp" if udp else "/proc/net/tcp"
        res = self._run(spec.source, ["vzctl", "exec", spec.ct, "cat", table], ctx, check=False)
        state = forwarding.UDP_BOUND if udp else "0A"
        return forwarding.listening_ports(res.out, ips, state) if res.ok else []

    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        """The destination runs (if the source did) with the expected IPs, and every port its
        container listens on answers from the old node (checked over the network, not assumed)."""
        want = "running" if self._marker(spec, "source_running", ctx) else "stopped"
        if self._status(spec.target, spec.dest_ct, ctx) != want:
            raise PermanentError(f"CT {spec.dest_ct} is not {want} on {spec.target}")
        if self._status(spec.source, spec.ct, ctx) == "running":
            raise PermanentError(f"CT {spec.ct} still runs on {spec.source}")
        conf = self._conf(spec.target, spec.dest_ct, ctx) or {}
        expected = self._new_ips(spec, self._source_conf(spec, ctx))
        if inventory.ips_of(conf) != expected:
            raise PermanentError(f"CT {spec.dest_ct} on {spec.target} has IPs "
                                 f"{inventory.ips_of(conf)}, expected {expected}")
        if want == "stopped" or not expected:
            return
        res = self._run(spec.target, ["vzctl", "exec", spec.dest_ct, "cat", "/proc/net/tcp"], ctx,
                        check=False)
        for port in forwarding.listening_ports(res.out, expected) if res.ok else []:
            res = self._run(spec.source, ["sh", "-c", forwarding.WAIT_PORT, "ferry", expected[0], str(port)],
                            ctx, check=False, timeout=30)
            if not res.ok:
                raise PermanentError(f"{expected[0]}:{port} does not answer from {spec.source}")

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Do what is due now; CleanupPending names the rest (teardown.py)."""
        teardown.cleanup(self, spec, ctx)

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Put everything back as it was before the move (teardown.py)."""
        teardown.rollback(self, spec, ctx)

    def restores(self) -> OpenVZRestore:
        """Restores from ``[openvz.backups]`` (restore.py), one SSH pool kept for the whole job."""
        if self._restores is None:
            self._restores = OpenVZRestore(self.settings)
        return self._restores

    def close(self) -> None:
        self.shell.close()
        if self._restores is not None:
            self._restores.shell.close()
