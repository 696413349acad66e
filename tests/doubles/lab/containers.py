"""Containers for the lab and a client that measures their service.

``make_container`` writes what ``vzctl create`` would leave behind: ``/etc/vz/conf/CTID.conf``
with the real key names and units (ctid.conf(5): PHYSPAGES/SWAPPAGES in 4 KiB pages
"barrier:limit", DISKSPACE in KiB "soft:hard", IP_ADDRESS space-separated) and a private area
holding a busybox root whose init serves HTTP on port 80 of every IP and, optionally, keeps
writing files at a steady rate.

``Prober`` runs probe.py inside the client namespace: a new TCP connection + HTTP GET every
20 ms; a connection fails when refused, reset or not answered within 5 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.doubles.lab.netlab import HERE, Lab, LabNode

INIT = """#!/bin/busybox sh
trap '/bin/busybox kill -TERM -1 2>/dev/null; exit 0' TERM
for ip in $IPS; do /bin/busybox httpd -f -p "$ip:80" -h /www & done
if [ -f /etc/udp_port ]; then
  for ip in $IPS; do /bin/udpecho "$ip" "$(/bin/busybox cat /etc/udp_port)" & done
fi
if [ -f /etc/writer ]; then
  (i=0; while :; do /bin/busybox cp /etc/writer /data/w$((i % 40)); i=$((i + 1));
   /bin/busybox usleep 50000; done) &
fi
while :; do /bin/busybox sleep 3600 & wait $!; done
"""


def make_container(node: LabNode, ctid: str, ip: str | None, *, hostname: str = "web",
                   name: str = "", files: int = 0, file_kb: int = 4, writer: bool = False,
                   ram_mb: int = 256, udp_port: int | None = None) -> Path:
    """Create container ``ctid`` (stopped) on ``node``; returns its private area (root ns path).
    ``udp_port``: it also serves UDP echo on that port of every IP (:func:`udp_echo_binary`)."""
    private = node.path("var_lib_vz/private") / ctid
    for sub in ("bin", "sbin", "www", "etc", "data", "dev"):
        (private / sub).mkdir(parents=True, exist_ok=True)
    if not (private / "dev/null").exists():
        os.mknod(private / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    shutil.copy("/bin/busybox", private / "bin/busybox")
    (private / "sbin/init").write_text(INIT)
    (private / "www/index.html").write_text(f"ct {ctid}\n")
    if writer:
        (private / "etc/writer").write_bytes(os.urandom(64 * 1024))
    if udp_port is not None:
        shutil.copy(udp_echo_binary(), private / "bin/udpecho")
        (private / "etc/udp_port").write_text(f"{udp_port}\n")
    blob = os.urandom(file_kb * 1024)
    for i in range(files):
        sub = private / "data" / f"d{i // 1000}"
        if i % 1000 == 0:
            sub.mkdir(exist_ok=True)
        (sub / f"f{i}").write_bytes(blob[: file_kb * 1024 - 8] + i.to_bytes(8, "little"))
    pages = ram_mb * 256
    conf = {"ONBOOT": "yes", "PHYSPAGES": f"0:{pages}", "SWAPPAGES": f"0:{pages // 2}",
            "DISKSPACE": "2097152:2306867", "DISKINODES": "200000:220000", "CPUS": "2",
            "VE_ROOT": "/vz/root/$VEID", "VE_PRIVATE": "/var/lib/vz/private/$VEID",
            "OSTEMPLATE": "busybox", "HOSTNAME": hostname, "IP_ADDRESS": ip or ""}
    if name:
        conf["NAME"] = name
    text = "".join(f'{k}="{v}"\n' for k, v in conf.items())
    (node.path("etc_vz/conf") / f"{ctid}.conf").write_text(text)
    return private


def udp_echo_binary() -> Path:
    """udpecho.c built static (the containers' root holds no libc), once per source change."""
    source = HERE / "udpecho.c"
    built = Path(tempfile.gettempdir()) / f"ferry-lab-udpecho-{int(source.stat().st_mtime)}"
    if not built.exists():
        subprocess.run(["gcc", "-static", "-O2", "-o", f"{built}.tmp", str(source)], check=True,
                       timeout=120)
        os.replace(f"{built}.tmp", built)
    return built


class _Client:
    """A client script from this directory run in the lab's client namespace until stopped;
    it prints "ready" once it sends, and leaves its figures in ``out`` (JSON)."""

    def __init__(self, lab: Lab, script: str, out: Path, *args: str) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.client_ns, sys.executable, str(HERE / script), *args,
             str(out)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{script} did not start")

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=15)
        return json.loads(self.out.read_text())


class UdpProber(_Client):
    """A UDP client sending to ``ip:port`` every ``interval`` s (udp_probe.py): one flow, each
    datagram echoed or counted lost."""

    def __init__(self, lab: Lab, ip: str, port: int, interval: float = 0.02) -> None:
        super().__init__(lab, "udp_probe.py", lab.base / f"udp-probe-{ip}.json", ip, str(port),
                         str(interval))


class Prober(_Client):
    """Clients hitting ``http://ip:80/`` from the client namespace while a move runs."""

    def __init__(self, lab: Lab, ip: str, interval: float = 0.02) -> None:
        super().__init__(lab, "probe.py", lab.base / f"probe-{ip}.json", ip, "80", str(interval))
