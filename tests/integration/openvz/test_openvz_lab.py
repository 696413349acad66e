"""End-to-end moves of OpenVZ containers across the namespace lab (real sshd, rsync, socat)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from adapters.base import MoveSpec, StepContext
from adapters.openvz import create_backend
from fleet.policy import Policy
from tests.doubles.lab.containers import Prober, make_container
from tests.doubles.lab.netlab import Lab, missing_binaries
from tests.integration.conformance.harness import MoveOrder, SagaStore, StepHooks, run_move

pytestmark = [pytest.mark.lab]

if os.geteuid() != 0:
    pytest.skip("the OpenVZ lab needs root (network and mount namespaces)", allow_module_level=True)
if missing_binaries():
    pytest.skip(f"the OpenVZ lab needs: {', '.join(missing_binaries())} "
                "(tests/apt-packages.txt)", allow_module_level=True)


@pytest.fixture(scope="module")
def lab():
    with Lab().up(3, disk_mb={"n3": 12}) as lab:
        yield lab


@pytest.fixture()
def backend(lab):
    be = create_backend(lab.settings(forward_seconds=60, hold_seconds=20, retention_hours=1))
    yield be
    be.close()


def start(lab, node, ctid, ip, **kw):
    make_container(lab.nodes[node], ctid, ip, **kw)
    lab.nodes[node].run(f"vzctl start {ctid}")
    lab.nodes[node].run(f"for i in $(seq 100); do ss -Hltn | grep -q {ip}:80 && exit 0; "
                        "sleep 0.02; done; exit 1")


def status(lab, node, ctid):
    return lab.nodes[node].run(f"vzctl status {ctid}").split()[2:]


def test_discover_reads_vzlist_and_configs(lab, backend):
    make_container(lab.nodes["n1"], "150", "10.77.0.150", hostname='x; rm -rf / #', ram_mb=512)
    inv = backend.discover()
    ct = inv.container("150")
    assert (ct.node, ct.status, ct.memory_mb, ct.ips) == ("n1", "stopped", 512, ["10.77.0.150"])
    assert ct.name == 'x; rm -rf / #'
    assert inv.node("n1").platform == "openvz" and inv.node("n1").cpus >= 1
    lab.nodes["n1"].run("rm -rf /var/lib/vz/private/150 /etc/vz/conf/150.conf")


def test_hostile_ctid_is_one_argument(lab, backend):
    journal = []
    spec = MoveSpec(ct="1; touch /tmp/pwned-ferry", source="n1", target="n2")
    checks = backend.preflight(spec, StepContext(journal=journal.append))
    assert not next(c for c in checks if c.name == "container-exists").ok
    assert not os.path.exists("/tmp/pwned-ferry")
    assert lab.nodes["n1"].run("ls /tmp/pwned-ferry 2>/dev/null; true") == ""
    assert all(isinstance(e.what, list) for e in journal) and journal


def test_live_move_keeps_source_area(lab, backend, tmp_path):
    start(lab, "n1", "101", "10.77.0.101")
    out = run_move(backend, MoveOrder("101", "n1", "n2", method="live"), tmp_path)
    assert out.state == "succeeded" and not out.fell_back, out.message
    assert status(lab, "n2", "101") == ["exist", "mounted", "running"]
    assert "101.conf.migrated" in lab.nodes["n1"].run("ls /etc/vz/conf")
    assert any(e.what[:2] == ["vzmigrate", "--live"] and "-r" in e.what for e in out.journal
               if isinstance(e.what, list))
    assert all(e.status is not None for e in out.journal if e.kind == "command")
    lab.nodes["n2"].run("vzctl stop 101 && vzctl destroy 101")


def test_live_refused_falls_back_to_copy(lab, backend, tmp_path):
    lab.nodes["n1"].run("echo REFUSE_LIVE=yes >> /etc/vz/lab.conf")
    try:
        start(lab, "n1", "102", "10.77.0.102", files=200)
        probe = Prober(lab, "10.77.0.102")
        out = run_move(backend, MoveOrder("102", "n1", "n2", method="live"), tmp_path)
        seen = probe.stop()
    finally:
        lab.nodes["n1"].run("sed -i /REFUSE_LIVE/d /etc/vz/lab.conf")
    assert out.state == "succeeded", out.message
    assert out.fell_back and out.method == "restart"
    assert status(lab, "n2", "102") == ["exist", "mounted", "running"]
    print(f"\nfallback move: service gap {seen['gap_s']} s, downtime "
          f"{out.figures.get('downtime_s', 0):.3f} s, failed {seen['failed']}")
    assert seen["failed"] == 0, seen["failures"]
    lab.nodes["n2"].run("vzctl stop 102 && vzctl destroy 102")


def test_ip_change_with_forwarding_zero_failures(lab, tmp_path):
    hook_log = tmp_path / "dns.log"
    hook = tmp_path / "dns-hook"
    hook.write_text(f"#!/bin/sh\necho \"$@\" >> {hook_log}\n")
    hook.chmod(0o755)
    be = create_backend(lab.settings(forward_seconds=8, retention_hours=0,
                                     dns_hook=[str(hook)]))
    start(lab, "n1", "103", "10.77.0.103", files=300, writer=True)
    probe = Prober(lab, "10.77.0.103")
    time.sleep(0.3)
    order = MoveOrder("103", "n1", "n2", options={"target_ct": "203", "ips": ["10.77.0.203"],
                                                   "hostname": "web-new"})
    store = SagaStore(tmp_path / "store")
    out = store.run(be, order)  # its cleanup retires the source area (retention 0), forwarding stays
    assert out.state == "succeeded", out.message
    assert out.cleanup_pending.startswith("kept on n1: forwarders of CT 103 until "), out
    assert "source area" not in out.cleanup_pending
    time.sleep(0.5)
    seen = probe.stop()
    print(f"\nIP change: service gap {seen['gap_s']} s (slowest answer {seen['slowest_s']} s), "
          f"{seen['ok']}/{seen['attempts']} ok, downtime {out.figures['downtime_s']:.3f} s")
    assert seen["failed"] == 0, seen["failures"]
    assert seen["ok"] > 20
    assert hook_log.read_text().split() == ["10.77.0.103", "10.77.0.203"]
    assert "HOSTNAME=\"web-new\"" in lab.nodes["n2"].run("cat /etc/vz/conf/203.conf")
    n1 = lab.nodes["n1"]
    assert "103" not in n1.run("ls /var/lib/vz/private/ /etc/vz/conf/")  # retired (retention 0)
    assert "ferry-ct-103" in n1.run("iptables -t nat -S")
    # the forwarders expire on their own (no ferry needed), taking rules and old address along
    deadline = time.monotonic() + 20  # the rules go first, then the address (forwarding.TEARDOWN)
    while ("ferry-ct-103" in n1.run("iptables -t nat -S") or "10.77.0.103" in n1.run("ip -o addr show")) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ferry-ct-103" not in n1.run("iptables -t nat -S")
    assert "10.77.0.103" not in n1.run("ip -o addr show")
    done = store.retry_cleanup(be, out)  # nothing left: returns instead of CleanupPending
    assert done.outcome.message == "cleanup done" and done.phase == "done", done.message
    assert "103" not in n1.run("ls /var/lib/ferry/").split()
    be.close()
    lab.nodes["n2"].run("vzctl stop 203 && vzctl destroy 203")


def test_destination_disk_full_rolls_back(lab, backend, tmp_path):
    start(lab, "n1", "104", "10.77.0.104", files=40, file_kb=512)  # ~20 MB; n3 has 12 MB
    order = MoveOrder("104", "n1", "n3")
    out = run_move(backend, order, tmp_path)
    assert out.state == "rolled_back" and "preflight failed: free-space" in out.message, out.message
    # as if the disk filled up after the check: the copy itself hits ENOSPC
    checks = backend.preflight
    backend.preflight = lambda s, c: [x for x in checks(s, c) if x.name != "free-space"]
    out = run_move(backend, order, tmp_path)
    assert out.state == "rolled_back" and "no space left on n3" in out.message, out.message
    assert status(lab, "n1", "104") == ["exist", "mounted", "running"]
    assert lab.nodes["n3"].run("ls /var/lib/vz/private/") == ""
    lab.nodes["n1"].run("vzctl stop 104 && vzctl destroy 104")


def test_ssh_drop_mid_rsync_retries_and_finishes(lab, backend, tmp_path):
    start(lab, "n1", "105", "10.77.0.105", files=2000, file_kb=16)
    n1 = lab.nodes["n1"]

    def cut_when_rsync_runs():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            # the copy's rsync (it names the bandwidth cap), not pre-flight's `rsync --version`:
            # cutting the connection between two commands would cut nothing in flight
            if any(line.startswith("rsync ") and "--bwlimit" in line
                   for line in n1.run("ps -eo args", check=False).splitlines()):
                # kill ferry's SSH session processes (children of this node's sshd), by pid
                pids = n1.run(f"ps -o pid= --ppid {n1.proc.pid}", check=False).split()
                for pid in pids:
                    n1.run(f"kill -9 {pid}", check=False)
                return
            time.sleep(0.01)

    cutter = threading.Thread(target=cut_when_rsync_runs)
    cutter.start()
    # 32 MB at 8 MB/s: the first copy runs for ~4 s, however fast the machine, so the cutter sees
    # it (at full speed it could end between two looks, and nothing would be cut).
    out = run_move(backend, MoveOrder("105", "n1", "n2"), tmp_path, policy=Policy(bandwidth_budget_mb_s=8))
    cutter.join()
    assert out.state == "succeeded", out.message
    assert out.retries >= 1
    assert status(lab, "n2", "105") == ["exist", "mounted", "running"]
    lab.nodes["n2"].run("vzctl stop 105 && vzctl destroy 105")


def test_source_is_not_retired_while_the_destination_does_not_stand(lab, tmp_path):
    be = create_backend(lab.settings(retention_hours=0))
    start(lab, "n1", "106", "10.77.0.106", files=20)
    n1, n2 = lab.nodes["n1"], lab.nodes["n2"]

    def break_destination(step, spec):
        if step == "cleanup":  # verified, then stopped behind ferry's back
            n2.run("vzctl stop 106")

    store = SagaStore(tmp_path)
    out = store.run(be, MoveOrder("106", "n1", "n2"), StepHooks(before=break_destination))
    assert out.state == "succeeded", out.message
    assert "keeping the source copy of CT 106 on n1" in out.cleanup_pending, out
    assert n1.run("test -f /var/lib/vz/private/106/sbin/init && test -f "
                  "/etc/vz/conf/106.conf.migrated && echo kept").strip() == "kept"
    n2.run("vzctl start 106")
    done = store.retry_cleanup(be, out)  # the destination stands again: retired, all done
    assert done.outcome.message == "cleanup done", done.message
    assert n1.run("ls /var/lib/vz/private /etc/vz/conf /var/lib/ferry").split().count("106") == 0
    assert "106.conf.migrated" not in n1.run("ls /etc/vz/conf")
    assert status(lab, "n2", "106") == ["exist", "mounted", "running"]
    be.close()
    n2.run("vzctl stop 106 && vzctl destroy 106")
