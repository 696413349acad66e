"""A Proxmox move to a new address forwards from the old node over SSH while DNS moves.

The API side is the Proxmox double; the old node's shell is a lab host (a network namespace with
its own sshd) standing for the Proxmox node ``pve1``: when the double shuts CT 104 down, the lab
container serving its address on that host stops too, as the real CT's veth would vanish. The
"restored copy" serving the new address is a lab container on a second host. Clients keep using
the old address (stale DNS); the old node holds and forwards them, and its forwarders retire
after the quiet period once the clients stop, not before. Clients refused while the source shuts
down (its services exit before its address goes) are counted; none may come after forwarding
starts."""

from __future__ import annotations

import os
import subprocess

import pytest

from adapters.base import CleanupPending, MoveSpec, StepContext
from adapters.proxmox import create_backend
from service.dns import DnsSection, Rfc2136Records
from tests.doubles.lab import forwarders, knot
from tests.doubles.lab.containers import Prober, make_container
from tests.doubles.lab.netlab import SUBNET, Lab, missing_binaries
from tests.doubles.pvedouble import guests
from tests.doubles.pvedouble.fixtures import make_double, pve_double, settings_for  # noqa: F401 - fixtures
from tests.integration.conformance.harness import MoveOrder, run_move

pytestmark = [pytest.mark.lab]

if os.geteuid() != 0 or missing_binaries():
    pytest.skip("needs root and the lab's binaries (tests/apt-packages.txt)", allow_module_level=True)

OLD, NEW, QUIET_S = f"{SUBNET}.101", f"{SUBNET}.201", 2


def _serve(node, ctid: str, ip: str) -> None:
    make_container(node, ctid, ip)
    node.run(f"vzctl start {ctid}")
    node.run(f"for i in $(seq 100); do ss -Hltn | grep -q {ip}:80 && exit 0; sleep 0.02; done; exit 1")


def _backend(lab: Lab, double, monkeypatch):
    """The Proxmox backend on the double, SSH to ``pve1`` being lab host n1; CT 104 serves
    ``OLD`` on n1 (stopping when the double shuts it down), its copy ``NEW`` on n2."""
    _serve(lab.nodes["n1"], "101", OLD)   # CT 104 as it serves on pve1
    _serve(lab.nodes["n2"], "201", NEW)   # its restored copy on pve2
    power = guests.set_power

    def set_power(world, node, vmid, action, user):
        if (node, vmid, action) in {("pve1", 104, "shutdown"), ("pve1", 104, "stop")}:
            lab.nodes["n1"].run("vzctl stop 101")  # the old address leaves with the CT
        return power(world, node, vmid, action, user)

    monkeypatch.setattr(guests, "set_power", set_power)
    with double.world.lock:
        double.world.guests[104].hostname = "www104.lab.test"
        double.world.guests[104].nets["net0"] = (
            f"name=eth0,bridge=eth0,gw={SUBNET}.1,hwaddr=BC:24:11:00:68:00,ip={OLD}/24,type=veth")
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", double.token_secret)
    ssh = lab.settings(forward_seconds=30, forward_quiet_s=QUIET_S, hold_seconds=10)
    return create_backend(settings_for(double, ssh={"nodes": {"pve1": ssh["nodes"]["n1"]},
                                                    **{k: v for k, v in ssh.items() if k != "nodes"}}))


ORDER = MoveOrder("104", "pve1", "pve2", method="dump",
                  options={"ips": [f"{NEW}/24"], "gateway": f"{SUBNET}.1", "ports": [80]})
SPEC = MoveSpec("104", "pve1", "pve2", method="dump", ips=(f"{NEW}/24",), gateway=f"{SUBNET}.1", ports=(80,))


def test_the_old_proxmox_node_forwards_until_the_clients_stop(pve_double, monkeypatch, tmp_path):  # noqa: F811
    with Lab().up(2) as lab:
        backend = _backend(lab, pve_double, monkeypatch)
        probe = Prober(lab, OLD)
        run = run_move(backend, ORDER, tmp_path)
        assert run.state == "succeeded", run.message
        assert "forwarders of CT 104 on pve1" in run.cleanup_pending  # still serving stale clients
        seen = probe.stop()
        start, last_hit, end, hits = forwarders.retired(lab, "pve-104", limit_s=30)
        print(f"\nclients: {seen['ok']}/{seen['attempts']} ok, gap {seen['gap_s']} s; forwarded {hits}, "
              f"forwarder lived {(end - start) / 1000:.1f} s, retired {(end - last_hit) / 1000:.1f} s after the last hit")
        # A CT's services exit before its veth goes (a Proxmox shutdown): clients arriving in
        # between are refused by the CT itself, before ferry can act. From the moment the old node
        # forwards, none is refused, reset or left waiting beyond 5 s.
        refused_at = [seen["started_epoch"] + f["at_s"] for f in seen["failures"]]
        assert all(at * 1000 < start for at in refused_at), (start, seen["failures"])
        assert seen["failed"] <= 5 and seen["ok"] > 10 * seen["failed"]
        assert hits > 10  # the old address kept answering through the old node
        assert end - last_hit >= QUIET_S * 1000 and end - start < 30_000  # by quiet, not by the maximum
        with pytest.raises(CleanupPending) as pending:  # the source stays for its retention
            backend.cleanup(SPEC, StepContext())
        assert "forwarders" not in str(pending.value) and "(retention)" in str(pending.value)
        assert "ferry-ct-104" not in lab.nodes["n1"].run("iptables -t nat -S")
        assert OLD not in lab.nodes["n1"].run("ip -o -4 addr show dev eth0")
        assert lab.nodes["n1"].run("ls /var/lib/ferry/pve-104 2>/dev/null; true").strip() == ""
        backend.close()


def _dig(server, name: str) -> str:
    out = subprocess.run(["kdig", "+noall", "+answer", "-p", str(server.port), f"@{server.address}",
                          "A", name], capture_output=True, text=True, timeout=10).stdout
    return " ".join(f"{w[1]} {w[4]}" for w in (line.split() for line in out.splitlines()) if len(w) == 5)


@pytest.mark.skipif(not knot.available(), reason="needs knotd (tests/apt-packages.txt)")
def test_the_record_moves_while_the_old_proxmox_node_forwards(pve_double, monkeypatch, tmp_path):  # noqa: F811
    old_ttl, low_ttl = 2, 1
    with Lab().up(2) as lab, knot.knot_server(tmp_path / "knot", {"www104": (OLD, old_ttl)},
                                              address=f"{SUBNET}.1") as server:
        backend = _backend(lab, pve_double, monkeypatch)
        backend.records = Rfc2136Records(DnsSection(server=server.address, port=server.port, zone=server.zone,
                                                    key_name=server.key_name, key_file="-", low_ttl_s=low_ttl),
                                         server.secret)
        probe = Prober(lab, f"www104.lab.test@{server.address}:{server.port}")
        run = run_move(backend, ORDER, tmp_path)
        assert run.state == "succeeded", run.message
        assert run.figures["dns_wait_s"] >= old_ttl - 0.5  # the old TTL ran out before the stop
        assert _dig(server, "www104.lab.test") == f"{low_ttl} {NEW}"  # switched, still the low TTL
        start, last_hit, end, hits = forwarders.retired(lab, "pve-104", limit_s=30)
        seen = probe.stop()
        assert seen["used"][NEW][0] > 10 and hits > 0  # clients moved on; stale ones were forwarded
        assert end - last_hit >= QUIET_S * 1000
        with pytest.raises(CleanupPending, match="retention"):
            backend.cleanup(SPEC, StepContext())
        assert _dig(server, "www104.lab.test") == f"{old_ttl} {NEW}"  # the TTL back once nobody forwards
        backend.close()
