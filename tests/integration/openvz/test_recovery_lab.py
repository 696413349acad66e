"""A dead OpenVZ node evacuated from its backups, end to end in the namespace lab.

    n1: three containers serving HTTP, vzdump'ed to the backup host (n4, /var/lib/vz/dump/n1)
    n1's namespace torn down (dead) --> ferry evacuate n1 --from-backups --node-is-fenced
        --> the archives restored on n2/n3 (fetched from n4, unpacked: the lab has no vzrestore)
        --> they serve again, with the data of the backup (what was written after it is lost)
    504 on n1 has no backup: known from ferry's last look at n1, listed as unrecoverable
    n1 brought back --> ferry cleanup: its copies stay stopped, ONBOOT="no", marked, reported;
        a boot of n1 afterwards starts none of them
    all along: an ARP watcher in the client namespace: never two hosts answering for an address

Every check reads the lab (the double's ``vzlist``, configs, HTTP from the client namespace, ARP
replies), never ferry's own account of what it did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.restore import STALE_MARK
from tests.doubles.lab.containers import make_container
from tests.doubles.lab.netlab import HERE, Lab, missing_binaries

WHY_NOT = ("the OpenVZ lab needs root (network and mount namespaces)" if os.geteuid() != 0
           else f"the OpenVZ lab needs: {', '.join(missing_binaries())}" if missing_binaries() else "")
pytestmark = [pytest.mark.lab, pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT)]

FERRY = str(Path(sys.executable).parent / "ferry")
CTS = {"501": "10.77.0.151", "502": "10.77.0.152", "503": "10.77.0.153"}
LIVE = ("n2", "n3")


@pytest.fixture
def lab():
    with Lab().up(4) as lab:  # n4 is the backup host, not an OpenVZ node of ferry's
        yield lab


def write_config(lab: Lab, tmp: Path, fence_command: str = "", shared: Path | None = None) -> Path:
    """ferry's config for n1-n3; the archives on the backup host n4, or in ``shared`` (a path every
    node sees, as an NFS mount)."""
    nodes = "".join(f'[openvz.nodes.{n}]\nhost = "{lab.nodes[n].addr}"\n' for n in ("n1", "n2", "n3"))
    backups = (f'dir = "{shared}/{{node}}"\n' if shared else
               f'dir = "/var/lib/vz/dump/{{node}}"\nhost = {{ host = "{lab.nodes["n4"].addr}" }}\n')
    path = tmp / "ferry.toml"
    path.write_text(
        '[ferry]\nbackend = "openvz"\nstate_dir = "state"\n'
        "[engine]\nretry_initial_s = 0.2\nretry_max_s = 1.0\n"
        + (f"[recovery]\nfence_command = {fence_command}\n" if fence_command else "")
        + f'[openvz]\nidentity_file = "{lab.identity}"\nknown_hosts_file = "{lab.known_hosts}"\n'
        "connect_timeout_s = 2\n"
        "[openvz.backups]\n" + backups + nodes)
    return path


def ferry(config: Path, *args: str, timeout: float = 300, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([FERRY, "--config", str(config), *args], capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == code, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


def serve_and_back_up(lab: Lab, node: str, cts: dict[str, str], shared: Path | None = None, **kw) -> None:
    """Containers running on ``node``, each vzdump'ed into ``shared``/node, else copied to the
    backup host (n4)."""
    host = lab.nodes[node]
    dumpdir = f"{shared}/{node}" if shared else "/var/lib/vz/dump"
    for ct, ip in cts.items():
        make_container(host, ct, ip, **kw)
        host.run(f"mkdir -p {dumpdir} && vzctl start {ct} && vzdump --compress --dumpdir {dumpdir} {ct} >/dev/null")
    if not shared:
        host.run(f"rsync -a --mkpath /var/lib/vz/dump/ root@{lab.nodes['n4'].addr}:/var/lib/vz/dump/{node}/ "
                 "&& rm -f /var/lib/vz/dump/*")


def world(lab: Lab, nodes: tuple[str, ...]) -> dict[str, list[tuple[str, str]]]:
    """Per container: (node, status) of every copy the given nodes hold (``vzlist -a``)."""
    copies: dict[str, list[tuple[str, str]]] = {}
    for name in nodes:
        for row in json.loads(lab.nodes[name].run("vzlist -a -j -o ctid,status")):
            copies.setdefault(str(row["ctid"]), []).append((name, row["status"]))
    return copies


GET = """
import socket, sys
with socket.create_connection((sys.argv[1], 80), timeout=3) as s:
    s.sendall(b"GET " + sys.argv[2].encode() + b" HTTP/1.0\\r\\n\\r\\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
head, _, body = data.partition(b"\\r\\n\\r\\n")
sys.stdout.write(body.decode() if b" 200 " in head.split(b"\\r\\n")[0] else "")
"""


def http_get(lab: Lab, ip: str, path: str = "/") -> str:
    """The body at http://ip/path from the client namespace ('' when nothing or an error answers)."""
    out = subprocess.run(["ip", "netns", "exec", lab.client_ns, sys.executable, "-c", GET, ip, path],
                         capture_output=True, text=True, timeout=15)
    return out.stdout if out.returncode == 0 else ""


class ArpWatch:
    """arpwatch.py in the client namespace: who answers for each address, all along."""

    def __init__(self, lab: Lab, ips: list[str]) -> None:
        self.out = lab.base / "arpwatch.json"
        self.proc = subprocess.Popen(["ip", "netns", "exec", lab.client_ns, sys.executable, str(HERE / "arpwatch.py"),
                                      "eth0", "10.77.0.2", str(self.out), *ips], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> dict[str, dict]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=15)
        return json.loads(self.out.read_text())


def conf_of(lab: Lab, node: str, ct: str) -> str:
    return lab.nodes[node].run(f"cat /etc/vz/conf/{ct}.conf")


def test_a_dead_node_comes_back_from_its_backups_and_its_copies_stay_stopped(lab, tmp_path):
    backups_started = time.time()
    serve_and_back_up(lab, "n1", CTS)
    backups_done = time.time()
    lab.nodes["n1"].run("echo late > /var/lib/vz/private/501/www/late.html")  # written after the backup
    assert http_get(lab, CTS["501"], "/late.html") == "late\n"
    make_container(lab.nodes["n1"], "504", "10.77.0.154")  # never backed up
    config = write_config(lab, tmp_path)
    seen = json.loads(ferry(config, "inventory", "--format", "json").stdout)  # ferry looks before n1 dies
    assert sorted(c["id"] for c in seen["containers"]) == [*sorted(CTS), "504"]
    watch = ArpWatch(lab, list(CTS.values()))
    try:
        lab.kill_node("n1")
        assert all(http_get(lab, ip) == "" for ip in CTS.values())  # dead: nothing answers
        refused = ferry(config, "evacuate", "n1", "--yes", code=2)
        assert "--from-backups" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        plan = json.loads(ferry(config, "plan", "evacuate", "n1", "--from-backups", "--format", "json").stdout)
        assert sorted(m["ct"] for m in plan["moves"]) == sorted(CTS)
        assert plan["recovery"]["unrecoverable"] == ["504"]  # known from ferry's last look, no archive
        assert [u["ct"] for u in plan["unplaced"]] == ["504"]
        assert all(m["to"] in LIVE and "/var/lib/vz/dump/n1/vzdump-openvz-" in m["restore"]["archive"]
                   for m in plan["moves"])
        planned_after = time.time()
        summary = json.loads(ferry(config, "evacuate", "n1", "--from-backups", "--node-is-fenced", "--yes",
                                   "--format", "json").stdout)
        assert summary["state"] == "succeeded", summary
        # the data age of the oldest archive restored, when the job was planned (names: 1 s steps)
        assert planned_after - backups_done - 1 <= summary["rpo_s"] <= time.time() - backups_started + 1
        for ct, ip in CTS.items():
            assert http_get(lab, ip) == f"ct {ct}\n"
            assert [s for _, s in world(lab, LIVE)[ct]] == ["running"]
        assert http_get(lab, CTS["501"], "/late.html") == ""  # newer than the backup: lost (RPO)
        ferry(config, "cleanup")
        waiting = json.loads(ferry(config, "recovery", "stale", "--format", "json").stdout)
        assert len(waiting) == 3 and all("not back yet" in r["stale"] for r in waiting)

        lab.revive_node("n1")
        ferry(config, "cleanup")
        report = json.loads(ferry(config, "recovery", "stale", "--format", "json").stdout)
        assert sorted(r["ct"] for r in report) == sorted(CTS) and all(STALE_MARK in r["stale"] for r in report)
        for ct in CTS:
            conf = conf_of(lab, "n1", ct)
            assert 'ONBOOT="no"' in conf and STALE_MARK in conf
            assert lab.nodes["n1"].run(f"test -f /var/lib/vz/private/{ct}/sbin/init && echo kept") == "kept\n"
        assert 'ONBOOT="yes"' in conf_of(lab, "n1", "504")  # unrecoverable: never touched
        # n1 boots: the vz service starts every container whose config says ONBOOT="yes"
        lab.nodes["n1"].run("for f in /etc/vz/conf/*.conf; do grep -q '^ONBOOT=\"yes\"' \"$f\" && "
                            "vzctl start \"$(basename \"$f\" .conf)\"; done; true")
        copies = world(lab, ("n1", *LIVE))
        for ct, ip in CTS.items():
            assert sorted(s for _, s in copies[ct]) == ["running", "stopped"]
            assert ("n1", "stopped") in copies[ct]
            assert http_get(lab, ip) == f"ct {ct}\n"
        time.sleep(1.0)  # a few more ARP rounds with the node back
    finally:
        seen = watch.stop()
    for ip, entry in seen.items():
        assert entry["max_holders"] == 1, (ip, entry["twice"])
        assert len(entry["macs"]) == 2, (ip, entry)  # held by n1, then by its new node: the watch saw both
        assert entry["rounds"] > 20 and entry["answered"] < entry["rounds"], entry  # and the gap between


def test_without_a_fence_nothing_starts(lab, tmp_path):
    cts = {"511": "10.77.0.161", "512": "10.77.0.162"}
    serve_and_back_up(lab, "n1", cts)
    lab.kill_node("n1")
    refused = ferry(write_config(lab, tmp_path), "evacuate", "n1", "--from-backups", "--yes", code=2)
    assert "--node-is-fenced" in refused.stderr
    config = write_config(lab, tmp_path, fence_command='["sh", "-c", "echo BMC {node} unreachable >&2; exit 3"]')
    assert json.loads(ferry(config, "jobs", "--format", "json").stdout) == []  # the refusal stored nothing
    summary = json.loads(ferry(config, "evacuate", "n1", "--from-backups", "--yes", "--format", "json",
                               code=3).stdout)
    assert summary["state"] in ("failed", "rolled_back"), summary
    assert not any(ct in world(lab, LIVE) for ct in cts)  # nothing restored is left, nothing runs
    assert all(http_get(lab, ip) == "" for ip in cts.values())
    detail = json.loads(ferry(config, "job", "show", str(summary["job_id"]), "--format", "json").stdout)
    fences = [e for e in detail["journal"] if e["step"] == "fence" and e["kind"] == "command"]
    assert fences and all(e["status"] == 3 and e["host"] == "localhost" for e in fences)
    assert not [e for e in detail["journal"] if e["step"] in ("restore", "start") and e["kind"] == "command"]


def install_vzrestore(lab: Lab) -> None:
    """vzrestore on every node (the double's, logging its calls): the restore uses it, not tar."""
    wrapper = lab.base / "bin" / "vzrestore"
    wrapper.write_text('#!/bin/sh\necho "$@" >> /var/lib/vzlab/vzrestore.log\n'
                       f'exec /usr/bin/python3 {HERE / "vzdouble.py"} vzrestore "$@"\n')
    wrapper.chmod(0o755)


def wait_for_fetch(ct: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until a node fetches ``ct``'s archive from the backup host (ferry still running). The lab's
    nodes share the machine's pid namespace: one ``ps`` sees them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        if any(line.startswith("rsync ") and f":/var/lib/vz/dump/n1/vzdump-openvz-{ct}-" in line
               for line in ps.splitlines()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no restore of {ct} seen (ferry exit status {proc.poll()})")


def test_kill_9_mid_restore_then_resume(lab, tmp_path):
    cts = {"531": "10.77.0.171", "532": "10.77.0.172"}
    serve_and_back_up(lab, "n1", {"531": cts["531"]}, files=600, file_kb=48)  # a ~29 MB archive
    serve_and_back_up(lab, "n1", {"532": cts["532"]})
    install_vzrestore(lab)
    lab.kill_node("n1")
    config = write_config(lab, tmp_path)
    # 4 MB/s per copy: the fetch of the big archive lasts seconds, so the kill lands inside it
    config.write_text(config.read_text() + "[policy]\nbandwidth_budget_mb_s = 8.0\n")
    with open(tmp_path / "ferry.log", "w") as log:
        proc = subprocess.Popen([FERRY, "--config", str(config), "evacuate", "n1", "--from-backups",
                                 "--node-is-fenced", "--yes", "--format", "json"], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        try:
            wait_for_fetch("531", proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    jobs = json.loads(ferry(config, "jobs", "--format", "json").stdout)
    assert jobs[0]["state"] == "running" and jobs[0]["run_by"] is None, jobs
    results = json.loads(ferry(config, "jobs", "resume", "--format", "json").stdout)
    assert [r["state"] for r in results] == ["succeeded"], results
    assert results[0]["rpo_s"] > 0
    copies = world(lab, LIVE)
    for ct, ip in cts.items():
        assert [s for _, s in copies[ct]] == ["running"], copies
        assert http_get(lab, ip) == f"ct {ct}\n"
    target = next(n for n, _ in copies["531"])
    assert "vzdump-openvz-531-" in lab.nodes[target].run("cat /var/lib/vzlab/vzrestore.log")
    assert lab.nodes[target].run("ls /var/lib/vz/dump") == ""  # the fetched archive is removed
    detail = json.loads(ferry(config, "job", "show", str(results[0]["job_id"]), "--format", "json").stdout)
    assert any("resuming" in str(e["what"]) for e in detail["journal"] if e["kind"] == "event" and e["ct"] == "531")


def test_archives_on_a_path_every_node_mounts_are_restored_in_place(lab, tmp_path):
    shared = lab.base / "shared"  # outside the nodes' own mounts: every node sees it, as NFS
    cts = {"541": "10.77.0.181"}
    serve_and_back_up(lab, "n1", cts, shared=shared)
    [archive] = list((shared / "n1").glob("vzdump-openvz-541-*.tgz"))
    lab.kill_node("n1")
    config = write_config(lab, tmp_path, shared=shared)
    summary = json.loads(ferry(config, "evacuate", "n1", "--from-backups", "--node-is-fenced", "--yes",
                               "--format", "json").stdout)
    assert summary["state"] == "succeeded", summary
    assert http_get(lab, cts["541"]) == "ct 541\n"
    assert archive.is_file()  # read where it lies, never moved nor removed
    detail = json.loads(ferry(config, "job", "show", str(summary["job_id"]), "--format", "json").stdout)
    commands = [e["what"] for e in detail["journal"] if e["kind"] == "command"]
    assert not [c for c in commands if c[:1] == ["rsync"] or c[4:5] == ["rsync"]]  # nothing fetched
    assert any(str(archive) in c for c in commands)
