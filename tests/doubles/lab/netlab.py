"""A multi-host lab on one machine: network namespaces as OpenVZ nodes, each with a real sshd.

    root ns: bridge <p>br 10.77.0.1/24 (ferry runs here)
      ├── veth ── <p>n1  eth0 10.77.0.11  sshd, own mount ns: /etc/vz /var/lib/vz /vz /root ...
      ├── veth ── <p>n2  eth0 10.77.0.12  (same)
      ├── veth ── <p>n3  eth0 10.77.0.13  (same)
      └── veth ── <p>cl  eth0 10.77.0.2   clients measuring the containers' service

Every name carries the creating process id (``<p>`` = ``fzl<pid>``), so leftovers of a crashed
run are recognised (their pid is dead) and removed before a new lab starts. Each node's sshd runs
under ``nsenter --net`` + ``unshare --mount --uts`` with bind mounts over the OpenVZ paths, so the
nodes do not see each other's containers; the OpenVZ tools there are the double in vzdouble.py.
Containers serve HTTP on port 80 of their IPs (busybox httpd), see :func:`make_container`.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUBNET = "10.77.0"
#: One lab at a time per machine (see Lab.up).
LAB_LOCK = "/run/lock/ferry-netlab.lock"
TOOLS = ("vzctl", "vzlist", "vzmigrate", "vzdump")
#: Paths each node gets its own copy of (bind mounts inside the node's mount namespace).
NODE_PATHS = {"etc_vz": "/etc/vz", "var_lib_vz": "/var/lib/vz", "vz": "/vz", "root": "/root",
              "ferry": "/var/lib/ferry", "vzlab": "/var/lib/vzlab", "bin": "/usr/local/sbin"}
REQUIRED_BINARIES = ("ip", "sshd", "ssh", "scp", "ssh-keygen", "rsync", "socat", "nsenter",
                     "unshare", "busybox", "arping", "iptables", "setsid", "timeout", "ss")


def missing_binaries() -> list[str]:
    return [b for b in REQUIRED_BINARIES if shutil.which(b) is None
            and not Path(f"/usr/sbin/{b}").exists()]


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class LabNode:
    name: str
    ns: str
    addr: str
    root: Path
    proc: subprocess.Popen | None = None
    disk_mb: int | None = None

    def path(self, key: str) -> Path:
        return self.root / key

    def run(self, command: str, check: bool = True, timeout: float = 60) -> str:
        """Run a shell command in this node's network and mount namespaces."""
        assert self.proc is not None
        out = sh("nsenter", "-t", str(self.proc.pid), "-n", "-m", "-u", "sh", "-c", command,
                 check=check, timeout=timeout)
        return out.stdout


@dataclass
class Lab:
    nodes: dict[str, LabNode] = field(default_factory=dict)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ferrylab-")))
    prefix: str = field(default_factory=lambda: f"fzl{os.getpid()}")
    client_ns: str = ""
    _lock: object | None = None

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    @property
    def identity(self) -> Path:
        return self.base / "ferry_id"

    def settings(self, **extra) -> dict:
        """Settings for ``adapters.openvz.create_backend`` pointing at this lab."""
        nodes = {n.name: {"host": n.addr, "port": 22, "user": "root"} for n in self.nodes.values()}
        return {"nodes": nodes, "identity_file": str(self.identity),
                "known_hosts_file": str(self.known_hosts), **extra}

    # ------------------------------------------------------------------ set-up / tear-down
    def up(self, count: int = 3, disk_mb: dict[str, int] | None = None) -> Lab:
        # Every lab uses the same subnet: two at once on one machine (two pytest runs, a bench
        # beside the suite) would fight over its routes. The second waits for the first.
        self._lock = open(LAB_LOCK, "w")  # noqa: SIM115 - held until down()
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        # Under the lock no other lab of this process is up (a second one would wait for the
        # lock forever), so this process's own names are leftovers too: a tear-down cut short
        # under load must not make every later lab of the run fail with "File exists".
        remove_leftovers(also_pid=os.getpid())
        try:
            self._keys()
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            self.client_ns = self._host("cl", f"{SUBNET}.2")
            for i in range(1, count + 1):
                name = f"n{i}"
                node = LabNode(name, self._host(name, f"{SUBNET}.{10 + i}"), f"{SUBNET}.{10 + i}",
                               self.base / name, disk_mb=(disk_mb or {}).get(name))
                self._prepare_node(node)
                self.nodes[name] = node
            for node in self.nodes.values():
                self._wait_sshd(node)
        except BaseException:
            self.down()
            raise
        return self

    def _host(self, suffix: str, addr: str) -> str:
        ns, outer = f"{self.prefix}{suffix}", f"{self.prefix}{suffix}v"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", outer, "master", self.bridge, "up")
        for cmd in (["ip", "addr", "add", f"{addr}/24", "dev", "eth0"],
                    ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"]):
            sh("ip", "netns", "exec", ns, *cmd)
        return ns

    def _keys(self) -> None:
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.base / "hostkey"))
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.identity))
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.base / "node_id"))
        (self.base / "bin").mkdir()
        for tool in TOOLS:
            wrapper = self.base / "bin" / tool
            wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/python3 {HERE / "vzdouble.py"} {tool} "$@"\n')
            wrapper.chmod(0o755)

    def _prepare_node(self, node: LabNode) -> None:
        for key in NODE_PATHS:
            if key != "bin":
                node.path(key).mkdir(parents=True)
        for sub in ("etc_vz/conf", "var_lib_vz/private", "var_lib_vz/dump", "vz/lock", "root/.ssh"):
            node.path(sub).mkdir(parents=True, exist_ok=True)
        host_pub = (self.base / "hostkey.pub").read_text().split()
        hosts = "".join(f"{SUBNET}.{10 + i} {host_pub[0]} {host_pub[1]}\n" for i in range(1, 10))
        self.known_hosts.write_text(hosts)
        ssh_dir = node.path("root/.ssh")
        (ssh_dir / "known_hosts").write_text(hosts)
        (ssh_dir / "authorized_keys").write_text(
            (self.identity.with_suffix(".pub")).read_text()
            + (self.base / "node_id.pub").read_text())
        shutil.copy(self.base / "node_id", ssh_dir / "id_ed25519")
        (ssh_dir / "id_ed25519").chmod(0o600)
        node.path("etc_vz/vz.conf").write_text(
            'VE_ROOT=/vz/root/$VEID\nVE_PRIVATE=/var/lib/vz/private/$VEID\nLOCKDIR=/vz/lock\n'
            'DUMPDIR=/var/lib/vz/dump\n')
        node.path("etc_vz/lab.conf").write_text("IFACE=eth0\n")
        cfg = node.root / "sshd_config"
        cfg.write_text(
            f"Port 22\nListenAddress {node.addr}\nHostKey {self.base / 'hostkey'}\n"
            f"PidFile {node.root / 'sshd.pid'}\nAuthorizedKeysFile /root/.ssh/authorized_keys\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nMaxStartups 100\n"
            "MaxSessions 100\nSubsystem sftp internal-sftp\nPrintMotd no\nUseDNS no\n"
            "LogLevel VERBOSE\n")
        self._start_sshd(node)

    def _start_sshd(self, node: LabNode) -> None:
        """The node's sshd in its own mount namespace over its bind-mounted OpenVZ paths."""
        cfg = node.root / "sshd_config"
        mounts = []
        for key, target in NODE_PATHS.items():
            src = self.base / "bin" if key == "bin" else node.path(key)
            Path(target).mkdir(parents=True, exist_ok=True)
            mounts.append(f"mount --bind {src} {target}")
        if node.disk_mb:
            mounts.append(f"mount -t tmpfs -o size={node.disk_mb}m tmpfs /var/lib/vz && "
                          "mkdir -p /var/lib/vz/private /var/lib/vz/dump")
        Path("/run/sshd").mkdir(exist_ok=True)
        script = " && ".join(mounts + [f"hostname {node.name}", f"exec /usr/sbin/sshd -D -e -f {cfg}"])
        log = open(node.root / "sshd.log", "a")  # noqa: SIM115 - the child holds it
        node.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{node.ns}", "unshare", "--mount", "--uts", "sh", "-c",
             script], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

    def kill_node(self, name: str) -> None:
        """The node dies: every process in its namespace (sshd, containers) killed, its network
        gone (its addresses answer nowhere); its files stay, as a dead server's disks do."""
        node = self.nodes[name]
        kill_namespace(node.ns)
        sh("ip", "link", "del", f"{node.ns}v", check=False)
        if node.proc:
            _reap(node.proc)

    def revive_node(self, name: str) -> None:
        """The node comes back as a fenced node is powered on: network and sshd, no container
        running (the lab has no boot: see the test's own boot step)."""
        node = self.nodes[name]
        self._host(name, node.addr)
        self._start_sshd(node)
        self._wait_sshd(node)

    def _wait_sshd(self, node: LabNode) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = sh("ip", "netns", "exec", node.ns, "ss", "-Hltn", "sport = :22", check=False)
            if node.addr in probe.stdout:
                return
            if node.proc and node.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"sshd on {node.name} did not start: "
                           f"{(node.root / 'sshd.log').read_text()[-500:]}")

    def down(self) -> None:
        """Tear everything down; each step runs even when an earlier one failed (a slow machine
        can make a wait time out), and the lock is released last, whatever happened."""
        namespaces = [ns for ns in [n.ns for n in self.nodes.values()] + [self.client_ns] if ns]
        try:
            for ns in namespaces:
                _quietly(kill_namespace, ns)
            for node in self.nodes.values():
                if node.proc:
                    _quietly(_reap, node.proc)
            for ns in namespaces:
                sh("ip", "link", "del", f"{ns}v", check=False)
            sh("ip", "link", "del", self.bridge, check=False)
            shutil.rmtree(self.base, ignore_errors=True)
        finally:
            if self._lock is not None:
                self._lock.close()  # releases the flock
                self._lock = None

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.down()


def kill_namespace(ns: str) -> None:
    """Kill every process inside ``ns`` (by pid: they are all ours), then delete it."""
    for _ in range(50):
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    sh("ip", "netns", "del", ns, check=False)


def _reap(proc: subprocess.Popen) -> None:
    """Wait for a node's sshd launcher; kill it if it outlives its namespace's processes."""
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def _quietly(step, *args) -> None:
    try:
        step(*args)
    except (OSError, subprocess.SubprocessError):
        pass  # tear-down goes on; remove_leftovers() cleans what this left


def _stale(pid: str, also_pid: int | None) -> bool:
    return int(pid) == also_pid or not Path(f"/proc/{pid}").exists()


def remove_leftovers(also_pid: int | None = None) -> None:
    """Remove namespaces, veths and bridges of earlier labs whose creating process is gone (and
    those of ``also_pid``, the calling process, when it holds the lab lock)."""
    names = sh("ip", "netns", "list", check=False).stdout.split("\n")
    for line in names:
        m = re.match(r"^(fzl(\d+)\w*)", line)
        if m and _stale(m.group(2), also_pid):
            kill_namespace(m.group(1))
    for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
        m = re.search(r": (fzl(\d+)\w+)[:@]", line)
        if m and _stale(m.group(2), also_pid):
            sh("ip", "link", "del", m.group(1), check=False)
