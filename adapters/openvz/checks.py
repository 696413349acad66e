"""Pre-flight checks of an OpenVZ move: the field's checklist, each with how to fix it.

    ssh:<node>  node-to-node-ssh  rsync:<node>  container-exists  not-locked  target-id-free
    free-space  clock-skew  backup (when asked)  kernel + vzmigrate-check-only (live only)

A check never raises for a failed condition; it returns ``Check(ok=False, detail=<what to do>)``.
Checks that only rule out a live move say so (``blocks="live"``): the engine then falls back to
the restart path instead of refusing the move.
"""

from __future__ import annotations

import time

from adapters.base import BackendError, Check, Journal, MoveSpec, PermanentError
from adapters.openvz import inventory
from adapters.openvz.settings import OpenVZSettings
from adapters.openvz.ssh import Shell
from adapters.openvz.transfer import ssh_command

# vzmigrate's exit statuses (man/vzmigrate.8.in and bin/vzmigrate.in of vzctl).
VZMIGRATE_EXIT = {1: "bad command line", 2: "container is stopped", 4: "cannot connect to the "
                  "destination", 6: "copying the private area failed", 7: "cannot start or restore "
                  "on the destination", 8: "cannot stop or checkpoint the source", 9: "container "
                  "already exists on the destination", 10: "container does not exist", 12: "its IP "
                  "addresses are in use on the destination", 14: "OpenVZ (or vzcpt/vzrst) not "
                  "running", 17: "checkpoint (CPT) version incompatible", 18: "destination CPU "
                  "incompatible", 20: "container is locked"}
LOCKED = 'f=/vz/lock/"$1".lck; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && echo locked; true'


class Preflight:
    def __init__(self, shell: Shell, settings: OpenVZSettings, spec: MoveSpec, journal: Journal,
                 source_private: str) -> None:
        self.shell, self.settings, self.spec, self.journal = shell, settings, spec, journal
        self.private = source_private

    def run(self, node: str, argv: list[str], timeout: float = 60):
        return self.shell.run(node, argv, self.journal, check=False, timeout=timeout)

    def all(self) -> list[Check]:
        spec = self.spec
        checks = [self.reach(spec.source), self.reach(spec.target)]
        if not all(c.ok for c in checks):
            return checks
        checks += [self.node_to_node(), self.rsync(spec.source), self.rsync(spec.target),
                   self.exists(), self.not_locked(), self.target_free(), self.free_space(),
                   self.clock_skew()]
        if spec.backup:
            checks.append(self.backup())
        if spec.method == "live":
            checks += [self.kernels(), self.vzmigrate_check()]
        return checks

    def reach(self, node: str) -> Check:
        try:
            self.shell.run(node, ["true"], self.journal, timeout=self.settings.connect_timeout_s)
        except BackendError as exc:
            return Check(f"ssh:{node}", False, f"{exc}; check the node is up and ferry's key is "
                         "in root's authorized_keys there")
        return Check(f"ssh:{node}", True)

    def node_to_node(self) -> Check:
        access = self.settings.nodes[self.spec.target]
        argv = ["sh", "-c", ssh_command(self.settings, self.spec.target) + ' "$1" true', "ferry",
                f"{access.user}@{access.host}"]
        ok = self.run(self.spec.source, argv).ok
        return Check("node-to-node-ssh", ok, "" if ok else
                     f"{self.spec.source} cannot SSH to {access.host} with a key: add its root "
                     "public key to the destination's authorized_keys and its host key to "
                     "known_hosts (ssh-copy-id, then ssh once)")

    def rsync(self, node: str) -> Check:
        ok = self.run(node, ["rsync", "--version"]).ok
        return Check(f"rsync:{node}", ok, "" if ok else f"install rsync on {node}")

    def exists(self) -> Check:
        res = self.run(self.spec.source, ["vzctl", "status", self.spec.ct])
        try:
            ok = inventory.ct_status(self.spec.source, self.spec.ct, res.out, res.status, res.err) != "absent"
        except PermanentError as refused:
            return Check("container-exists", False, str(refused))
        return Check("container-exists", ok, "" if ok else
                     f"CT {self.spec.ct} does not exist on {self.spec.source}; refresh the inventory")

    def not_locked(self) -> Check:
        locked = "locked" in self.run(self.spec.source, ["sh", "-c", LOCKED, "ferry",
                                                         self.spec.ct]).out
        return Check("not-locked", not locked, "" if not locked else
                     f"CT {self.spec.ct} is locked by another vzctl/vzmigrate on "
                     f"{self.spec.source} (/vz/lock/{self.spec.ct}.lck); wait for it to finish")

    def target_free(self) -> Check:
        res = self.run(self.spec.target, ["vzctl", "status", self.spec.dest_ct])
        try:
            ok = inventory.ct_status(self.spec.target, self.spec.dest_ct, res.out, res.status, res.err) == "absent"
        except PermanentError as refused:
            return Check("target-id-free", False, str(refused))
        return Check("target-id-free", ok, "" if ok else
                     f"CTID {self.spec.dest_ct} is taken on {self.spec.target}; plan the move "
                     "with a new CTID (target_ct)")

    def free_space(self) -> Check:
        used = self.run(self.spec.source, ["du", "-sk", self.private]).out.split()
        free = self.run(self.spec.target, ["df", "-Pk", "/var/lib/vz"]).out.splitlines()
        if not used or len(free) < 2:
            return Check("free-space", False, "could not measure the private area or free space")
        need = int(used[0]) * (1 + self.settings.free_space_margin)
        avail = int(free[1].split()[3])
        ok = avail >= need
        return Check("free-space", ok, "" if ok else
                     f"{self.spec.target} has {avail // 1024} MiB free in /var/lib/vz, the move "
                     f"needs {int(need) // 1024} MiB (private area + {self.settings.free_space_margin:.0%});"
                     " free space there or choose another destination")

    def clock_skew(self) -> Check:
        stamps = []
        for node in (self.spec.source, self.spec.target):
            before = time.time()
            out = self.run(node, ["date", "+%s.%N"]).out.strip()
            try:
                stamps.append(float(out) - (before + time.time()) / 2)
            except ValueError:
                return Check("clock-skew", False, f"`date +%s.%N` on {node} printed {out[:40]!r}, "
                             "not a time: check GNU date (coreutils) is installed there")
        skew = abs(stamps[0] - stamps[1])
        ok = skew < self.settings.max_clock_skew_s
        return Check("clock-skew", ok, f"{skew:.2f} s" if ok else
                     f"clocks differ by {skew:.1f} s; start NTP (chrony) on both nodes")

    def backup(self) -> Check:
        minutes = str(int(self.settings.backup_max_age_hours * 60))
        out = self.run(self.spec.source, ["find", self.settings.dump_dir, "-maxdepth", "1", "-name",
                                          f"vzdump-openvz-{self.spec.ct}-*", "-mmin", f"-{minutes}"])
        ok = bool(out.out.strip())
        return Check("backup", ok, "" if ok else
                     f"no vzdump archive of CT {self.spec.ct} younger than "
                     f"{self.settings.backup_max_age_hours:g} h in {self.settings.dump_dir}; run "
                     f"vzdump --compress --dumpdir {self.settings.dump_dir} {self.spec.ct}")

    def kernels(self) -> Check:
        src = self.run(self.spec.source, ["uname", "-r"]).out.strip()
        dst = self.run(self.spec.target, ["uname", "-r"]).out.strip()
        ok = src == dst
        return Check("kernel", ok, f"{src}" if ok else
                     f"kernels differ ({src} vs {dst}): a live move needs the same OpenVZ kernel;"
                     " the move falls back to copy + restart", blocks="live")

    def vzmigrate_check(self) -> Check:
        host = self.settings.nodes[self.spec.target].host
        res = self.run(self.spec.source, ["vzmigrate", "--check-only", "--live", host,
                                          self.spec.ct], timeout=120)
        why = VZMIGRATE_EXIT.get(res.status, (res.err or res.out).strip()[-200:])
        return Check("vzmigrate-check-only", res.ok, "" if res.ok else
                     f"vzmigrate --check-only --live refused (exit {res.status}: {why}); the "
                     "move falls back to copy + restart", blocks="live")
