"""The node's bandwidth budget reaches rsync: a move's share (policy -> MoveSpec, as the engine
builds it) becomes ``--bwlimit`` on every rsync of the move, and the rate the lab's real rsync
over real SSH achieves, by ferry's own figures (bytes sent / seconds copying), is that share."""

from __future__ import annotations

import os

import pytest

from adapters.openvz import create_backend
from fleet.policy import Policy
from service.movespec import build_spec
from service.store import MoveRow
from tests.doubles.lab.containers import make_container
from tests.doubles.lab.netlab import Lab, missing_binaries
from tests.integration.conformance.harness import MoveOrder, run_move

pytestmark = [pytest.mark.lab]

if os.geteuid() != 0:
    pytest.skip("the OpenVZ lab needs root (network and mount namespaces)", allow_module_level=True)
if missing_binaries():
    pytest.skip(f"the OpenVZ lab needs: {', '.join(missing_binaries())}", allow_module_level=True)

MB = 1 << 20
#: n1's budget, shared by two moves at once: 3 MB/s each (3072 KiB/s); 24 MB take ~8 s.
POLICY = Policy(max_outgoing_per_node=2, node_bandwidth_budget_mb_s={"n1": 6.0})
SHARE_MB_S = 3.0
DATA_FILES, FILE_KB = 384, 64


@pytest.fixture(scope="module")
def lab():
    with Lab().up(2) as lab:
        yield lab


def test_rsync_runs_at_the_moves_share_of_the_budget(lab, tmp_path) -> None:
    make_container(lab.nodes["n1"], "701", "10.77.0.171", files=DATA_FILES, file_kb=FILE_KB)
    spec = build_spec(MoveRow(ct="701", source="n1", target="n2", method="restart", options={}), 1, POLICY)
    assert spec.bwlimit_mb_s == SHARE_MB_S
    backend = create_backend(lab.settings(retention_hours=1))
    try:
        before = backend.observe(spec)
        out = run_move(backend, MoveOrder("701", "n1", "n2"), tmp_path, policy=POLICY)
        after = backend.observe(spec)
    finally:
        backend.close()
    assert out.state == "succeeded", out.message
    assert (before.source.status, before.target.status) == ("stopped", "absent")
    # the source copy is kept (config renamed .migrated) for the retention; the copy is complete
    assert (after.source.status, after.target.status, after.target.ct) == ("stopped", "stopped", "701")
    copies = [e.what for e in out.journal if isinstance(e.what, list) and "--stats" in e.what]
    assert len(copies) >= 2 and all("--bwlimit=3072" in argv for argv in copies), copies  # presync + final pass
    sent, seconds = out.figures["bytes"], out.figures["transfer_s"]
    assert sent >= DATA_FILES * FILE_KB * 1024, out.figures  # the whole private area, by pre-copy
    rate = sent / MB / seconds
    print(f"rsync rate {rate:.2f} MB/s against a share of {SHARE_MB_S} MB/s "
          f"({sent / MB:.1f} MB in {seconds:.1f} s)")
    # rsync keeps its average at the limit (rsync(1) --bwlimit); SSH setup and file-list time
    # count in transfer_s, so the rate may fall short of the share, never well above it
    assert 0.7 * SHARE_MB_S <= rate <= 1.05 * SHARE_MB_S, out.figures
    assert lab.nodes["n2"].run("vzctl status 701").split()[2:3] == ["exist"]
