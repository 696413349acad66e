"""The DNS side of a readdressing move survives a crash (adapters/openvz/readdress.py): the TTL is
lowered once per move, so a resumed prepare neither lowers it again nor records the low TTL as
the original; restoring puts the original back and forgets the state. Runs the module's shell
commands on this machine (a node's shell without SSH) against a real Knot DNS on loopback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from adapters.base import Cancelled
from adapters.openvz import readdress
from adapters.openvz.ssh import Result
from service.dns import DnsSection, Rfc2136Records
from tests.doubles.lab import knot

pytestmark = pytest.mark.skipif(not knot.available(), reason="needs knotd (apt-get install knot) and root")


class LocalShell:
    """Runs a node's argv here: the state directory is a local folder."""

    def run(self, node: str, argv: list[str], journal, check: bool = True, **_kw) -> Result:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 or not check, (argv, done.stderr)
        return Result(done.returncode, done.stdout, done.stderr)


def test_lowered_once_waited_out_and_restored(tmp_path: Path):
    with knot.knot_server(tmp_path / "knot", {"www": ("10.0.1.5", 2)}) as server:
        records = Rfc2136Records(DnsSection(server=server.address, port=server.port, zone=server.zone,
                                            key_name="ferry", key_file="-", low_ttl_s=1), server.secret)
        state, updates = tmp_path / "state", []
        state.mkdir()
        shell = LocalShell()
        waited = readdress.lower_ahead(shell, records, "n1", str(state), "101", "www.lab.test",
                                       updates.append, lambda: False)
        assert waited >= 1.5  # the old TTL (2 s) ran out before the move goes on
        assert records.read("www.lab.test.") == (1, ["10.0.1.5"])
        # a resumed prepare: nothing lowered again, nothing to wait for
        again = readdress.lower_ahead(shell, records, "n1", str(state), "101", "www.lab.test",
                                      updates.append, lambda: False)
        assert again < 0.5 and len(updates) == 1
        readdress.switch(shell, records, "n1", str(state), "10.0.2.10", updates.append)
        assert records.read("www.lab.test.") == (1, ["10.0.2.10"])
        readdress.restore(shell, records, "n1", str(state), "10.0.2.10", updates.append)
        assert records.read("www.lab.test.") == (2, ["10.0.2.10"])  # the original TTL
        assert not (state / "dns").exists() and len(updates) == 3


def test_a_cancelled_wait_stops_the_move_with_the_ttl_recorded(tmp_path: Path):
    with knot.knot_server(tmp_path / "knot", {"www": ("10.0.1.5", 600)}) as server:
        records = Rfc2136Records(DnsSection(server=server.address, port=server.port, zone=server.zone,
                                            key_name="ferry", key_file="-", low_ttl_s=1), server.secret)
        state = tmp_path / "state"
        state.mkdir()
        with pytest.raises(Cancelled, match="TTL of www.lab.test"):
            readdress.lower_ahead(LocalShell(), records, "n1", str(state), "101", "www.lab.test",
                                  lambda e: None, lambda: True)
        # rollback finds the original TTL to put back
        readdress.restore(LocalShell(), records, "n1", str(state), "10.0.1.5", lambda e: None)
        assert records.read("www.lab.test.") == (600, ["10.0.1.5"])
