"""Downtime of an OpenVZ move: ferry's pre-copy path against naive stop -> full copy -> start.

Both runs use the same lab (network namespaces, real sshd/rsync), the same container (>= 500 MB,
>= 20,000 files, writing 64 KiB every 50 ms) and the same client (a new HTTP connection every
20 ms); downtime is the longest time between two successful answers. ferry's restart path:
pre-copy rounds while the container serves, then in one call on the source node: gate new
connections, stop, send only what changed since the last round (adapters/openvz/delta.py), and
start on the new node. Run: ``.venv/bin/python -m bench.openvz_downtime`` (root;
FERRY_BENCH_MB / FERRY_BENCH_FILES to shrink).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from adapters.openvz import create_backend
from service.lifecycle import MoveState
from tests.doubles.lab.containers import Prober, make_container
from tests.doubles.lab.netlab import Lab
from tests.integration.conformance.harness import MoveOrder, MoveRun, run_move


def naive_move(lab: Lab, ctid: str) -> None:
    """What an operator types by hand: stop, copy everything, start on the new node."""
    n1 = lab.nodes["n1"]
    n1.run(f"vzctl stop {ctid} && rsync -aHAX --delete --numeric-ids -e 'ssh -o BatchMode=yes' "
           f"/var/lib/vz/private/{ctid}/ root@{lab.nodes['n2'].addr}:/var/lib/vz/private/{ctid}/ "
           f"--mkpath && scp -q /etc/vz/conf/{ctid}.conf root@{lab.nodes['n2'].addr}:/etc/vz/conf/ "
           f"&& mv /etc/vz/conf/{ctid}.conf /etc/vz/conf/{ctid}.conf.migrated", timeout=900)
    lab.nodes["n2"].run(f"vzctl start {ctid}")


def measure(lab: Lab, ctid: str, ip: str, move) -> float:
    n1 = lab.nodes["n1"]
    n1.run(f"vzctl start {ctid}")
    time.sleep(1.0)
    probe = Prober(lab, ip)
    time.sleep(0.5)
    move()
    time.sleep(1.5)
    seen = probe.stop()
    return seen["gap_s"]


def main() -> None:
    size_mb = int(os.environ.get("FERRY_BENCH_MB", "520"))
    files = int(os.environ.get("FERRY_BENCH_FILES", "20000"))
    file_kb = max(1, size_mb * 1024 // files)
    with Lab().up(2) as lab, tempfile.TemporaryDirectory(prefix="ferry-bench-") as store:
        backend = create_backend(lab.settings(retention_hours=1))
        for ctid, ip in (("301", "10.77.0.31"), ("302", "10.77.0.32")):
            make_container(lab.nodes["n1"], ctid, ip, files=files, file_kb=file_kb, writer=True)
        naive = measure(lab, "301", "10.77.0.31", lambda: naive_move(lab, "301"))
        moved: list[MoveRun] = []  # through the engine's saga, as `ferry` runs it
        ferry = measure(lab, "302", "10.77.0.32",
                        lambda: moved.append(run_move(backend, MoveOrder("302", "n1", "n2"), Path(store))))
        backend.close()
    if moved[0].state != MoveState.SUCCEEDED:
        raise RuntimeError(f"move failed: {moved[0].message}")
    figures = moved[0].figures
    print(f"container: {files} files, {files * file_kb // 1024} MB, writing 1.3 MB/s")
    print(f"naive stop -> full copy -> start: downtime {naive:.2f} s (baseline 1.00)")
    print(f"ferry pre-copy + final delta:     downtime {ferry:.2f} s "
          f"(ratio {ferry / naive:.3f}, {naive / max(ferry, 1e-3):.1f}x less)")
    print(f"ferry's final pass sent {figures.get('final_bytes', 0) / 2**20:.1f} MiB; its own "
          f"stop-to-started figure {figures.get('downtime_s', 0):.2f} s")


if __name__ == "__main__":
    main()
