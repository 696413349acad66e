"""Done-when of cross-subnet moves, in the lab: an evacuation planned from a config with two
subnets gives every container a pool address; a real Knot DNS serves the new record after the
switch and the old TTL back after; clients resolving through it and connecting every 20 ms see
no failed connection; the forwarders retire after the quiet period, not before.

Lab layout: one wire (10.77.0.0/24) carved into two declared subnets, lan-a = 10.77.0.0/25 (n1)
and lan-b = 10.77.0.128/25 (n2); Knot listens on the lab bridge's address (10.77.0.1)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from fleet.networks import Networks
from service import jobs
from service.config import Config, EngineSection, FerrySection
from service.dns import DnsSection
from service.operations.planning import plan_nodes
from service.operations.requests import NodesPlanRequest
from service.runtime import Runtime
from tests.doubles.lab import forwarders, knot
from tests.doubles.lab.containers import Prober, make_container
from tests.doubles.lab.netlab import SUBNET, Lab, missing_binaries

pytestmark = [pytest.mark.lab]

if os.geteuid() != 0 or missing_binaries() or not knot.available():
    pytest.skip("needs root, the OpenVZ lab's binaries and knotd (tests/apt-packages.txt)",
                allow_module_level=True)

QUIET_S = 2
OLD_TTL_S, LOW_TTL_S = 2, 1
CTS = {"101": f"{SUBNET}.101", "102": f"{SUBNET}.102"}
POOL = [f"{SUBNET}.200", f"{SUBNET}.201"]


def _config(lab: Lab, tmp: Path, server: knot.KnotServer) -> Config:
    networks = Networks.model_validate({"ttl_s": 300, "subnets": {  # live plans ask the server
        "lan-a": {"subnet": f"{SUBNET}.0/25", "nodes": ["n1"]},
        "lan-b": {"subnet": f"{SUBNET}.128/25", "nodes": ["n2"], "pool": [f"{POOL[0]}-{POOL[-1]}"]}}})
    dns = DnsSection(server=server.address, port=server.port, zone=server.zone,
                     key_name=server.key_name, key_file=str(server.key_file()), low_ttl_s=LOW_TTL_S)
    openvz = lab.settings(forward_seconds=30, forward_quiet_s=QUIET_S, hold_seconds=20,
                          retention_hours=0)
    return Config(ferry=FerrySection(backend="openvz", state_dir=str(tmp / "state")),
                  engine=EngineSection(retry_initial_s=0.2, retry_max_s=1.0),
                  openvz=openvz, networks=networks, dns=dns)


def _dig(server: knot.KnotServer, name: str) -> str:
    out = subprocess.run(["kdig", "+noall", "+answer", "-p", str(server.port), f"@{server.address}",
                          "A", name], capture_output=True, text=True, timeout=10).stdout
    return " ".join(f"{w[1]} {w[4]}" for w in (line.split() for line in out.splitlines()) if len(w) == 5)


def test_cross_subnet_evacuation_moves_addresses_records_and_clients(tmp_path: Path):
    records = {f"www{ct}": (ip, OLD_TTL_S) for ct, ip in CTS.items()}
    with Lab().up(2) as lab, knot.knot_server(tmp_path / "knot", records,
                                              address=f"{SUBNET}.1") as server:
        for ct, ip in CTS.items():
            make_container(lab.nodes["n1"], ct, ip, hostname=f"www{ct}.lab.test", files=20)
            lab.nodes["n1"].run(f"vzctl start {ct}")
            lab.nodes["n1"].run(f"for i in $(seq 100); do ss -Hltn | grep -q {ip}:80 && exit 0; "
                                "sleep 0.02; done; exit 1")
        rt = Runtime(_config(lab, tmp_path, server))
        plan = plan_nodes(rt, "evacuate", NodesPlanRequest(nodes=["n1"])).plan
        given = {m.ct: m.address.to for m in plan.moves}
        assert sorted(given.values()) == POOL and all(m.to == "n2" for m in plan.moves)
        assert {m.address.old_address_s for m in plan.moves} == {OLD_TTL_S}
        probes = {ct: Prober(lab, f"www{ct}.lab.test@{server.address}:{server.port}")
                  for ct in CTS}
        time.sleep(0.3)
        job = jobs.create_job(rt.sessions, plan, approved=True)
        summary = rt.engine().run_job(job)
        assert summary.state == "succeeded", summary
        for ct in CTS:  # the record names the new address, still with the low TTL
            assert _dig(server, f"www{ct}.lab.test") == f"{LOW_TTL_S} {given[ct]}"
        retired = {ct: forwarders.retired(lab, ct, limit_s=30) for ct in CTS}
        seen = {ct: probe.stop() for ct, probe in probes.items()}
        for ct, (start, last_hit, end, hits) in retired.items():
            old = seen[ct]["used"].get(CTS[ct])
            print(f"\nCT {ct}: {seen[ct]['ok']}/{seen[ct]['attempts']} ok, gap {seen[ct]['gap_s']} s, "
                  f"forwarded {hits} connections, forwarder lived {(end - start) / 1000:.1f} s, "
                  f"retired {(end - last_hit) / 1000:.1f} s after the last hit")
            assert seen[ct]["failed"] == 0, seen[ct]["failures"]
            assert seen[ct]["used"][given[ct]][0] > 10  # clients moved to the new address
            assert hits > 0 and old is not None
            assert end - last_hit >= QUIET_S * 1000  # not before the quiet period ...
            assert end >= old[2] * 1000 + QUIET_S * 1000  # ... after the clients' last use
            assert end - start < 30_000  # ... and by quiet, not by the maximum
        rt.engine().run_cleanups()  # forwarders gone: the record gets its old TTL back
        for ct in CTS:
            assert _dig(server, f"www{ct}.lab.test") == f"{OLD_TTL_S} {given[ct]}"
            assert f"ferry-ct-{ct}" not in lab.nodes["n1"].run("iptables -t nat -S")
        rt.backend.close()
