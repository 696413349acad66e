"""The IP-changing path of an OpenVZ move beside the same-address one, measured in one run.

Two containers built identically (FERRY_BENCH_MB / FERRY_BENCH_FILES, writing 64 KiB every
50 ms) move n1 -> n2 through the engine's saga. One keeps its address (the gate path); the other
gets a new one: its record on a real Knot DNS (TTL ``OLD_TTL_S``) is lowered, the copy starts once
the old TTL ran out, the old address forwards to the new one, the record is switched, and the
forwarders retire once no client came for ``QUIET_S``. Clients open a new HTTP connection every
20 ms; for the moved address they resolve the name through Knot with a caching stub resolver
first; a UDP client keeps one flow to the old address (echo server in the container, a datagram
every 20 ms), stopped 1 s after the move. Reported: the service gap (longest time without a
successful answer), failed connections (refused, reset, or no answer within 5 s), UDP datagrams
lost (no echo within 1 s), the connections the forwarder carried and its life.
Run: ``.venv/bin/python -m bench.openvz_readdress`` (root; knotd from the ``knot`` package).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from adapters.openvz import create_backend
from service.dns import DnsSection, Rfc2136Records
from service.lifecycle import MoveState
from tests.doubles.lab import forwarders, knot
from tests.doubles.lab.containers import Prober, UdpProber, make_container
from tests.doubles.lab.netlab import SUBNET, Lab
from tests.integration.conformance.harness import MoveOrder, run_move

OLD_TTL_S, LOW_TTL_S, QUIET_S, UDP_PORT = 5, 1, 2, 5353


def _moved(lab: Lab, backend, order: MoveOrder, target: str, udp_ip: str, store: Path) -> dict:
    """Run ``order`` while a client hits ``target`` and a UDP client keeps one flow to
    ``udp_ip`` (the old address: a stale client); the clients' figures (the UDP one stopped 1 s
    after the move, the HTTP one once any forwarders retired) and the move's."""
    probe, udp = Prober(lab, target), UdpProber(lab, udp_ip, UDP_PORT)
    time.sleep(0.5)
    run = run_move(backend, order, store)
    if run.state != MoveState.SUCCEEDED:
        raise RuntimeError(f"move of {order.ct} failed: {run.message}")
    time.sleep(1.0)
    udp_seen = udp.stop()
    retired = forwarders.retired(lab, order.ct, limit_s=90) if order.options.get("ips") else None
    time.sleep(1.0)
    return {"client": probe.stop(), "udp": udp_seen, "move": run.figures, "retired": retired}


def main() -> None:
    size_mb = int(os.environ.get("FERRY_BENCH_MB", "520"))
    files = int(os.environ.get("FERRY_BENCH_FILES", "20000"))
    file_kb = max(1, size_mb * 1024 // files)
    old_ip, new_ip, same_ip = f"{SUBNET}.41", f"{SUBNET}.141", f"{SUBNET}.42"
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp, Lab().up(2) as lab, \
            knot.knot_server(Path(tmp) / "knot", {"www": (old_ip, OLD_TTL_S)},
                             address=f"{SUBNET}.1") as server:
        settings = DnsSection(server=server.address, port=server.port, zone=server.zone,
                              key_name=server.key_name, key_file="-", low_ttl_s=LOW_TTL_S)
        backend = create_backend(lab.settings(retention_hours=1, forward_seconds=60,
                                              forward_quiet_s=QUIET_S))
        backend.records = Rfc2136Records(settings, server.secret)
        for ctid, ip, host in (("401", same_ip, "same"), ("402", old_ip, "www.lab.test")):
            make_container(lab.nodes["n1"], ctid, ip, files=files, file_kb=file_kb, writer=True,
                           hostname=host, udp_port=UDP_PORT)
            lab.nodes["n1"].run(f"vzctl start {ctid}")
        time.sleep(1.0)
        same = _moved(lab, backend, MoveOrder("401", "n1", "n2"), same_ip, same_ip, Path(tmp) / "s1")
        change = _moved(lab, backend, MoveOrder("402", "n1", "n2", options={"ips": [new_ip]}),
                        f"www.lab.test@{server.address}:{server.port}", old_ip, Path(tmp) / "s2")
        backend.close()
    _report(files, file_kb, same, change, old_ip, new_ip)


def _report(files: int, file_kb: int, same: dict, change: dict, old_ip: str, new_ip: str) -> None:
    start, last_hit, end, hits = change["retired"]
    used = change["client"]["used"]
    print(f"container: {files} files, {files * file_kb // 1024} MB, writing 1.3 MB/s; "
          f"record TTL {OLD_TTL_S} s, lowered to {LOW_TTL_S} s; quiet period {QUIET_S} s")
    for label, seen in (("same address ", same), ("new address  ", change)):
        client = seen["client"]
        print(f"{label}: gap {client['gap_s']:.2f} s, failed {client['failed']}/"
              f"{client['attempts']} connections, slowest answer {client['slowest_s']:.2f} s, "
              f"stop-to-started {seen['move'].get('downtime_s', 0):.2f} s; UDP (one flow to the "
              f"old address) {seen['udp']['lost']}/{seen['udp']['sent']} datagrams lost, gap "
              f"{seen['udp']['gap_s']:.2f} s")
    print(f"new address  : waited {change['move'].get('dns_wait_s', 0):.1f} s for the old TTL; "
          f"clients used {old_ip} {used.get(old_ip, [0])[0]}x, {new_ip} {used.get(new_ip, [0])[0]}x")
    print(f"forwarder    : carried {hits} hits (new TCP connections and UDP datagrams), lived {(end - start) / 1000:.1f} s, last new "
          f"connection {(last_hit - start) / 1000:.1f} s after start, retired {(end - last_hit) / 1000:.1f} s "
          f"after it (quiet period {QUIET_S} s)")


if __name__ == "__main__":
    main()
