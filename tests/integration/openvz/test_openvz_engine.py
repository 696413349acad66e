"""ferry's engine and CLI driving the OpenVZ backend against the namespace lab, as an operator
would: ``ferry inventory``, ``ferry evacuate``, ``ferry job show``, and ``kill -9`` + ``ferry jobs
resume`` in the middle of a move; and the SSH pool those commands share per node.

Every check reads the lab's nodes directly (the double's ``vzctl``/``vzlist``, the configs, the
sshd logs), never ferry's own account of what it did.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from adapters.base import JournalEntry
from adapters.openvz.settings import load_settings
from adapters.openvz.ssh import CONNECTION_LOST, NOT_STARTED, CommandLost, Result, Shell
from fleet.snapshot import parse_inventory
from tests.doubles.lab.containers import make_container
from tests.doubles.lab.netlab import Lab, missing_binaries

pytestmark = [pytest.mark.lab]

if os.geteuid() != 0:
    pytest.skip("the OpenVZ lab needs root (network and mount namespaces)", allow_module_level=True)
if missing_binaries():
    pytest.skip(f"the OpenVZ lab needs: {', '.join(missing_binaries())}", allow_module_level=True)

FERRY = str(Path(sys.executable).parent / "ferry")
SESSION = re.compile(r"Starting session: command for root from 10\.77\.0\.1 port")


@pytest.fixture(scope="module")
def lab():
    with Lab().up(3) as lab:
        yield lab


def write_config(lab: Lab, tmp: Path, retention_hours: float = 1,
                 forward_seconds: float = 30, rsync_extra: str = "") -> Path:
    nodes = "".join(f'[openvz.nodes.{n.name}]\nhost = "{n.addr}"\n' for n in lab.nodes.values())
    path = tmp / "ferry.toml"
    path.write_text(
        '[ferry]\nbackend = "openvz"\nstate_dir = "state"\n'
        "[engine]\nretry_initial_s = 0.2\nretry_max_s = 1.0\n"
        f'[openvz]\nidentity_file = "{lab.identity}"\nknown_hosts_file = "{lab.known_hosts}"\n'
        f"retention_hours = {retention_hours}\nforward_seconds = {forward_seconds}\n"
        "hold_seconds = 20\n"
        + ('rsync_options = ["-aHAX", "--delete", "--numeric-ids", "--sparse", "--whole-file", '
           f'"{rsync_extra}"]\n' if rsync_extra else "")
        + nodes)
    return path


def ferry(config: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([FERRY, "--config", str(config), *args], capture_output=True,
                            text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (args, result.stdout, result.stderr[-2000:])
    return result


def world(lab: Lab) -> dict[str, list[tuple[str, str, list[str]]]]:
    """Per container id: (node, status, IPs) of every copy the nodes hold (``vzlist -a``)."""
    copies: dict[str, list[tuple[str, str, list[str]]]] = {}
    for node in lab.nodes.values():
        rows = json.loads(node.run("vzlist -a -j -o ctid,status,ip"))
        for row in rows:
            copies.setdefault(str(row["ctid"]), []).append((node.name, row["status"], row["ip"]))
    return copies


def assert_one_running_copy(lab: Lab, cts: dict[str, str], source: str) -> None:
    """Each container runs exactly once, not on ``source``; no IP on two running containers."""
    copies = world(lab)
    running_ips: list[str] = []
    for ct, ip in cts.items():
        running = [c for c in copies.get(ct, []) if c[1] == "running"]
        assert len(running) == 1, (ct, copies.get(ct))
        assert running[0][0] != source and running[0][2] == [ip], running
    for entries in copies.values():
        running_ips += [ip for _node, status, ips in entries if status == "running" for ip in ips]
    assert len(running_ips) == len(set(running_ips)), running_ips


def sessions_from_ferry(lab: Lab, offsets: dict[str, int]) -> dict[str, int]:
    """SSH sessions ferry opened on each node since ``offsets`` (sshd's own log, VERBOSE)."""
    out = {}
    for node in lab.nodes.values():
        with open(node.root / "sshd.log", "rb") as fh:
            fh.seek(offsets[node.name])
            out[node.name] = len(SESSION.findall(fh.read().decode(errors="replace")))
    return out


def log_offsets(lab: Lab) -> dict[str, int]:
    return {n.name: (n.root / "sshd.log").stat().st_size for n in lab.nodes.values()}


def serve(lab: Lab, node: str, ct: str, ip: str, **kw) -> None:
    make_container(lab.nodes[node], ct, ip, **kw)
    lab.nodes[node].run(f"vzctl start {ct}")


def test_inventory_matches_the_double(lab, tmp_path):
    serve(lab, "n2", "410", "10.77.0.141", hostname="db; rm -rf /", ram_mb=384)
    make_container(lab.nodes["n3"], "411", "10.77.0.142", ram_mb=128)
    inv = parse_inventory(json.loads(ferry(write_config(lab, tmp_path), "inventory", "--format",
                                           "json").stdout))
    copies = world(lab)
    seen = {c.id: (c.node, c.status, c.ips) for c in inv.containers}
    assert seen == {ct: (n, s, ips) for ct, [(n, s, ips)] in copies.items()}
    assert inv.container("410").memory_mb == 384 and inv.container("411").memory_mb == 128
    assert inv.container("410").name == "db; rm -rf /"
    assert {n.name for n in inv.nodes} == {"n1", "n2", "n3"}
    for ct, node in (("410", "n2"), ("411", "n3")):
        lab.nodes[node].run(f"vzctl stop {ct} 2>/dev/null; vzctl destroy {ct}")


def test_evacuate_through_the_cli_journals_every_command(lab, tmp_path):
    cts = {"421": "10.77.0.121", "422": "10.77.0.122", "423": "10.77.0.123"}
    for ct, ip in cts.items():
        serve(lab, "n1", ct, ip, files=50)
    config = write_config(lab, tmp_path)
    offsets = log_offsets(lab)
    summary = json.loads(ferry(config, "evacuate", "n1", "--yes", "--format", "json").stdout)
    assert summary["state"] == "succeeded", summary
    assert_one_running_copy(lab, cts, "n1")
    detail = json.loads(ferry(config, "job", "show", str(summary["job_id"]), "--format",
                              "json").stdout)
    commands = [e for e in detail["journal"] if e["kind"] == "command"]
    assert commands and {m["state"] for m in detail["moves"]} == {"succeeded"}
    for i, entry in enumerate(commands):
        assert entry["host"] in lab.nodes or entry["host"] == "localhost", entry
        assert isinstance(entry["what"], list) and entry["what"], entry
        assert entry["duration_ms"] >= 0, entry
        if entry["status"] is None:  # a session lost under load: journaled as such, and retried
            assert_lost_then_retried(entry, commands[i + 1:])
        else:
            assert isinstance(entry["status"], int), entry
    assert any(e["what"][:2] == ["vzmigrate", "--live"] for e in commands)
    # every SSH session sshd saw from ferry is in the journal (discovery: 3 per node, unjournaled);
    # a command journaled as not started never reached sshd
    opened = sessions_from_ferry(lab, offsets)
    journaled = {n: sum(1 for e in commands if e["host"] == n
                        and e["detail"].get("outcome") != NOT_STARTED) for n in lab.nodes}
    assert opened == {n: journaled[n] + 3 for n in lab.nodes}, (opened, journaled)
    for ct in cts:
        node = next(n for n, s, _ in world(lab)[ct] if s == "running")
        lab.nodes[node].run(f"vzctl stop {ct} && vzctl destroy {ct}")


#: Commands a step may find lost and run again: they only read, or (vzmigrate) take the
#: container's vzctl lock, so a second run while a lost first one still runs on the node is
#: refused (exit 20, retried) and the retry's observation then finds the move done.
RERUNNABLE = (["vzctl", "status"], ["cat"], ["test"], ["vzmigrate"])


def assert_lost_then_retried(entry: dict, later: list[dict]) -> None:
    """A command journaled without an exit status says why (the node never got it, or the
    connection was lost under it), may safely run twice, and its step ran again afterwards."""
    assert entry["detail"].get("outcome") in (NOT_STARTED, CONNECTION_LOST), entry
    assert any(entry["what"][:len(p)] == p for p in RERUNNABLE), entry
    again = [e for e in later if (e["ct"], e["step"]) == (entry["ct"], entry["step"])]
    assert again and isinstance(again[0]["status"], int), (entry, again[:1])


MARK = "/tmp/ferry-pool-slow-started"
#: The lab's sshd allows this many sessions on one connection (netlab.py: MaxSessions).
MAX_SESSIONS = 100


def wait_until(ready, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_refused_channel_cuts_no_other_command_on_the_connection(lab):
    """A channel the node refuses fails that one command, journaled as never started, and cuts
    none of the commands other moves run on the same connection (closing the shared connection
    lost them all, and the engine then re-ran them while their first runs might still go on)."""
    shell = Shell(load_settings(lab.settings()))
    journal: list[JournalEntry] = []
    node = lab.nodes["n1"]
    node.run(f"rm -f {MARK}")
    slow: dict[str, Result | BaseException] = {}

    def run_slow() -> None:
        try:
            slow["result"] = shell.run("n1", ["sh", "-c", f"touch {MARK}; sleep 2; echo finished"],
                                       journal.append)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            slow["result"] = exc

    thread = threading.Thread(target=run_slow)
    thread.start()
    held: list[paramiko.Channel] = []
    try:
        wait_until(lambda: node.run(f"test -e {MARK} && echo yes", check=False).strip() == "yes")
        shared = shell.client("n1")
        with pytest.raises(paramiko.ChannelException):  # every session sshd allows is taken
            for _ in range(MAX_SESSIONS + 1):
                held.append(shared.get_transport().open_session(timeout=10))
        with pytest.raises(CommandLost) as lost:
            shell.run("n1", ["echo", "refused"], journal.append)
        assert lost.value.outcome == NOT_STARTED
        again = shell.run("n1", ["echo", "again"], journal.append)  # a fresh connection
        assert again.out.strip() == "again" and shell.client("n1") is not shared
        thread.join(timeout=60)
        assert not thread.is_alive()
        result = slow["result"]
        assert isinstance(result, Result) and result.out.strip() == "finished", result
        # the old connection closed once its last command ended (the held channels went with it)
        wait_until(lambda: not shared.get_transport() or not shared.get_transport().is_active())
    finally:
        thread.join(timeout=60)
        for chan in held:
            chan.close()
        shell.close()
        node.run(f"rm -f {MARK}", check=False)
    by_command = {e.what[-1]: e for e in journal}
    refused = by_command["refused"]
    assert refused.status is None and refused.detail["outcome"] == NOT_STARTED, refused
    assert refused.detail["error"].startswith("n1: could not start `echo refused`: ChannelException")
    assert by_command["again"].status == 0 and by_command["again"].detail == {}
    slow_entry = next(e for e in journal if e.what[0] == "sh")
    assert slow_entry.status == 0 and slow_entry.detail == {}


def wait_for_rsync_of(lab: Lab, node: str, private: str, proc: subprocess.Popen,
                      timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if private in lab.nodes[node].run("ps -ww -eo args", check=False):
            return
        time.sleep(0.05)
    raise AssertionError(f"no rsync of {private} on {node} (ferry exit status {proc.poll()})")


def test_kill_9_mid_presync_then_resume(lab, tmp_path):
    n1 = lab.nodes["n1"]
    cts = {"431": "10.77.0.131", "432": "10.77.0.132", "433": "10.77.0.133"}
    serve(lab, "n1", "431", cts["431"], files=3000, file_kb=48, writer=True)  # ~140 MB
    serve(lab, "n1", "432", cts["432"], files=20)
    serve(lab, "n1", "433", cts["433"], files=20)
    n1.run("echo REFUSE_LIVE=yes >> /etc/vz/lab.conf")  # live refused: restart path, presync
    # rsync at 20 MB/s: the ~140 MB presync lasts seconds, so the kill below lands inside it
    # however fast this machine copies
    config = write_config(lab, tmp_path, rsync_extra="--bwlimit=20000")
    log = open(tmp_path / "ferry.log", "w")
    try:
        proc = subprocess.Popen([FERRY, "--config", str(config), "evacuate", "n1", "--yes",
                                 "--format", "json"], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        try:
            wait_for_rsync_of(lab, "n1", "/var/lib/vz/private/431/", proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        jobs = json.loads(ferry(config, "jobs", "--format", "json").stdout)
        assert jobs[0]["state"] == "running" and jobs[0]["run_by"] is None, jobs
        assert "running" in n1.run("vzctl status 431")  # presync leaves the source serving
        results = json.loads(ferry(config, "jobs", "resume", "--format", "json").stdout)
    finally:
        n1.run("sed -i /REFUSE_LIVE/d /etc/vz/lab.conf")
    assert [r["state"] for r in results] == ["succeeded"], results
    assert_one_running_copy(lab, cts, "n1")
    detail = json.loads(ferry(config, "job", "show", str(results[0]["job_id"]), "--format",
                              "json").stdout)
    assert any("resuming" in str(e["what"]) for e in detail["journal"] if e["kind"] == "event")
    for ct in cts:  # retention 1 h: the stopped source copy and its config are kept
        assert n1.run(f"test -f /var/lib/vz/private/{ct}/sbin/init && "
                      f"test -f /etc/vz/conf/{ct}.conf.migrated && echo kept").strip() == "kept"


def node_facts(lab: Lab) -> dict[str, str]:
    """What a cleanup could touch on each node: containers, configs, areas, ferry's state and
    rules, addresses."""
    script = ("vzlist -a -H -o ctid,status,ip; ls /etc/vz/conf /var/lib/vz/private "
              "/var/lib/ferry; iptables -S; iptables -t nat -S; ip -o -4 addr show dev eth0")
    return {n.name: n.run(script) for n in lab.nodes.values()}


def test_deferred_cleanup_retires_the_source_when_due(lab, tmp_path):
    cts = {"441": "10.77.0.144", "442": "10.77.0.145"}
    for ct, ip in cts.items():
        serve(lab, "n1", ct, ip, files=20)
    serve(lab, "n3", "443", "10.77.0.146")  # a bystander no cleanup may touch
    # An hour's retention cannot end during the test, however slow the machine; its end is then
    # brought about the way the source node measures it: the move's "prepared" mark grows old.
    config = write_config(lab, tmp_path, retention_hours=1, forward_seconds=2)
    summary = json.loads(ferry(config, "evacuate", "n1", "--yes", "--format", "json").stdout)
    assert summary["state"] == "succeeded", summary
    lines = json.loads(ferry(config, "cleanup", "--format", "json").stdout)
    assert len(lines) == 2 and all("source area of CT" in line for line in lines), lines
    detail = json.loads(ferry(config, "job", "show", str(summary["job_id"]), "--format",
                              "json").stdout)
    assert {(m["state"], m["phase"]) for m in detail["moves"]} == {("succeeded", "pending")}
    assert all("kept on n1: source area" in m["message"] for m in detail["moves"]), detail
    n1 = lab.nodes["n1"]
    for ct in cts:  # nothing retired before its time
        assert n1.run(f"test -f /var/lib/vz/private/{ct}/sbin/init && echo kept").strip() == "kept"
    before = node_facts(lab)
    for ct in cts:  # two hours have passed, on the source node's clock
        n1.run(f"cd /var/lib/ferry/{ct} && touch -d @$(( $(date +%s) - 7200 )) prepared && "
               "{ [ ! -f forward.until ] || echo $(( $(date +%s) - 1 )) > forward.until; }")
    lines = json.loads(ferry(config, "cleanup", "--format", "json").stdout)
    assert lines and all(line.endswith("cleanup done") for line in lines), lines
    assert json.loads(ferry(config, "cleanup", "--format", "json").stdout) == []
    detail = json.loads(ferry(config, "job", "show", str(summary["job_id"]), "--format",
                              "json").stdout)
    assert {(m["state"], m["phase"]) for m in detail["moves"]} == {("succeeded", "done")}
    assert detail["state"] == "succeeded"
    after = node_facts(lab)
    for ct in cts:  # the source area, its config and ferry's state (forwarders) are gone
        names = {ct, f"{ct}.conf", f"{ct}.conf.migrated"}
        assert names & set(before["n1"].split()) and not names & set(after["n1"].split()), after
    assert "ferry-ct-" not in "".join(after.values())
    assert after["n2"] == before["n2"] and after["n3"] == before["n3"]  # nothing else changed
    assert_one_running_copy(lab, {**cts, "443": "10.77.0.146"}, "n1")
    for ct in cts:
        node = next(n for n, s, _ in world(lab)[ct] if s == "running")
        lab.nodes[node].run(f"vzctl stop {ct} && vzctl destroy {ct}")
    lab.nodes["n3"].run("vzctl stop 443 && vzctl destroy 443")
