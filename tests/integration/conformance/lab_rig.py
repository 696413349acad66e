"""The OpenVZ namespace lab as a conformance rig: real sshd, rsync and the vz tools' double.

The world is read from the root namespace without ferry and without SSH: each node's configs,
private areas and the run directory of the vz double (a container runs while its init pid lives).
Faults are the lab's own: a CT lock held by another process (pre-flight), a state directory that
cannot be made (prepare), a destination area that is not a directory (presync), ``FAIL_START``
in lab.conf (cutover), the destination stopped behind ferry's back (verify, cleanup).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

from adapters.base import Backend, JournalEntry
from adapters.openvz import create_backend
from tests.doubles.lab.containers import make_container
from tests.doubles.lab.netlab import Lab, LabNode
from tests.integration.conformance.harness import MoveOrder
from tests.integration.conformance.invariants import Seen
from tests.integration.conformance.rigs import STEPS_TO_VERIFY

#: Commands that change a container's run state or move it. ``rm -rf`` of what is already gone
#: and the guarded renames (``[ ! -f x ] || mv ...``) observe before they act: safe to repeat.
DESTRUCTIVE_WORDS = ("vzctl stop", "vzctl start", "vzctl destroy", "vzctl chkpnt", "vzmigrate",
                     "vzdump --restore")


def _conf(node: LabNode, ct: str) -> dict[str, str]:
    path = node.path("etc_vz/conf") / f"{ct}.conf"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip('"') for k, _, v in (line.partition("=") for line in lines) if v}


def _running(node: LabNode, ct: str) -> bool:
    try:
        pid = int((node.path("vzlab") / "run" / f"{ct}.pid").read_text())
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return False


class LabWorldView:
    def __init__(self, lab: Lab) -> None:
        self.nodes = lab.nodes

    def _seen(self, node: LabNode, ct: str) -> Seen | None:
        conf, running = _conf(node, ct), _running(node, ct)
        if not conf and not running:
            return None
        return Seen(node.name, ct, running, tuple(conf.get("IP_ADDRESS", "").split()))

    def copies(self, order: MoveOrder) -> list[Seen]:
        found = (self._seen(self.nodes[order.source], order.ct),
                 self._seen(self.nodes[order.target], order.dest_ct))
        return [seen for seen in found if seen]

    def running_ips(self) -> list[tuple[str, str]]:
        out = []
        for node in self.nodes.values():
            run = node.path("vzlab") / "run"
            for pidfile in run.glob("*.pid") if run.is_dir() else ():
                ct = pidfile.stem
                if _running(node, ct):
                    out += [(ip, f"{node.name}/{ct}") for ip in _conf(node, ct).get("IP_ADDRESS", "").split()]
        return out

    def source_data(self, order: MoveOrder) -> bool:
        return (self.nodes[order.source].path("var_lib_vz/private") / order.ct / "sbin/init").is_file()


@dataclass
class LabRig:
    lab: Lab
    name: str = "openvz-lab"
    watch_interval_s: float | None = 0.25
    crash_steps: tuple[str, ...] = ("presync", "cutover", "cleanup")
    _ids: itertools.count = field(default_factory=lambda: itertools.count(701))
    made: list[MoveOrder] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.backend = create_backend(self.lab.settings(retention_hours=0))
        self.world = LabWorldView(self.lab)

    def restarted(self) -> Backend:
        crashed, self.backend = self.backend, create_backend(self.lab.settings(retention_hours=0))
        crashed.close()  # its SSH connections: a dead process's sockets close too
        return self.backend

    def stop(self, order: MoveOrder) -> None:
        self.lab.nodes[order.source].run(f"vzctl stop {order.ct}")

    def order(self) -> MoveOrder:
        ct = str(next(self._ids))
        n1 = self.lab.nodes["n1"]
        make_container(n1, ct, f"10.77.0.{int(ct) - 500}", files=20)
        n1.run(f"vzctl start {ct}")
        order = MoveOrder(ct, "n1", "n2")
        self.made.append(order)
        return order

    def arm(self, step: str, order: MoveOrder) -> None:
        source, target = self.lab.nodes[order.source], self.lab.nodes[order.target]
        if step == "preflight":  # another vzctl holds the CT's lock (a live pid: sshd's)
            lock = source.path("vz") / "lock" / f"{order.ct}.lck"
            lock.parent.mkdir(parents=True, exist_ok=True)
            lock.write_text(f"{source.proc.pid}\n")
        elif step == "prepare":  # ferry's state directory cannot be made
            (source.path("ferry") / order.ct).write_text("not a directory\n")
        elif step == "presync":  # the destination area is in the way
            (target.path("var_lib_vz/private") / order.dest_ct).write_text("not a directory\n")
        elif step == "cutover":
            with target.path("etc_vz/lab.conf").open("a") as fh:
                fh.write(f"FAIL_START={order.dest_ct}\n")
        elif step in ("verify", "cleanup"):  # the verified destination stopped behind ferry's back
            target.run(f"vzctl stop {order.dest_ct}", check=False)
        else:
            raise ValueError(step)
        assert step in (*STEPS_TO_VERIFY, "cleanup")

    def heal(self, order: MoveOrder) -> None:
        source, target = self.lab.nodes[order.source], self.lab.nodes[order.target]
        (source.path("vz") / "lock" / f"{order.ct}.lck").unlink(missing_ok=True)
        for path in (source.path("ferry") / order.ct, target.path("var_lib_vz/private") / order.dest_ct):
            if path.is_file():
                path.unlink()
        target.run("sed -i /FAIL_START/d /etc/vz/lab.conf")
        if _conf(target, order.dest_ct) and not _running(target, order.dest_ct):
            target.run(f"vzctl start {order.dest_ct}", check=False)

    def tidy(self) -> None:
        """Remove every container this rig made, on every node."""
        for order in self.made:
            for node in self.lab.nodes.values():
                for ct in {order.ct, order.dest_ct}:
                    node.run(f"vzctl stop {ct} >/dev/null 2>&1; true")
                    node.run(f"rm -rf /var/lib/vz/private/{ct} /etc/vz/conf/{ct}.conf* "
                             f"/var/lib/ferry/{ct} /vz/lock/{ct}.lck")
        self.made.clear()
        self.backend.close()

    def destructive(self, entry: JournalEntry) -> str | None:
        what = entry.what
        text = " ".join(what) if isinstance(what, list) else str(what)
        if entry.kind == "command" and any(word in text for word in DESTRUCTIVE_WORDS):
            return f"{entry.host}: {text}"
        return None


def lab_available() -> str:
    """Why the lab cannot run here ("" when it can)."""
    from tests.doubles.lab.netlab import missing_binaries

    if os.geteuid() != 0:
        return "the OpenVZ lab needs root (network and mount namespaces)"
    missing = missing_binaries()
    return f"the OpenVZ lab needs: {', '.join(missing)}" if missing else ""


