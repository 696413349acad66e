"""RFC 2136 + TSIG against a real Knot DNS on loopback: lower the TTL, point the record at a new
address, restore the TTL; an unsigned or wrongly signed update is refused, never half-applied."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from adapters.base import JournalEntry, PermanentError
from service.dns import DnsSection, Rfc2136Records, records_from
from tests.doubles.lab import knot

pytestmark = pytest.mark.skipif(not knot.available(), reason="needs knotd (apt-get install knot) and root")


def _dig(server: knot.KnotServer, name: str) -> str:
    """What a plain resolver client (kdig) gets from the server: 'TTL ADDRESS' lines."""
    out = subprocess.run(["kdig", "+noall", "+answer", "-p", str(server.port), f"@{server.address}",
                          "A", name], capture_output=True, text=True, timeout=10).stdout
    return " ".join(f"{w[1]} {w[4]}" for w in (line.split() for line in out.splitlines()) if len(w) == 5)


@pytest.fixture
def server(tmp_path: Path):
    with knot.knot_server(tmp_path / "knot", {"www": ("10.0.1.5", 600)}) as srv:
        yield srv


def _records(server: knot.KnotServer, secret: str | None = None) -> Rfc2136Records:
    settings = DnsSection(server=server.address, port=server.port, zone=server.zone,
                          key_name=server.key_name, key_file=str(server.key_file()), low_ttl_s=5)
    return Rfc2136Records(settings, secret or server.secret)


def test_lower_point_restore_through_signed_updates(server: knot.KnotServer):
    records, journal = _records(server), []
    name = records.name_of("101", "www.lab.test")
    assert name == "www.lab.test."
    assert records.lower(name, 5, journal.append) == 600
    assert _dig(server, name) == "5 10.0.1.5"
    records.point(name, "10.0.2.10", 5, journal.append)
    assert _dig(server, name) == "5 10.0.2.10"
    records.point(name, "10.0.2.10", 600, journal.append)
    assert _dig(server, name) == "600 10.0.2.10"
    assert [e.status for e in journal] == [0, 0, 0] and all(isinstance(e, JournalEntry) for e in journal)
    assert all(server.secret not in str(e.what) for e in journal)


def test_a_record_ferry_has_no_name_for_is_left_alone(server: knot.KnotServer):
    records = _records(server)
    assert records.name_of("102", "mail.elsewhere.example") is None
    assert records.name_of("103", "x" * 70 + ".lab.test") is None  # not a DNS name at all
    assert records.lower("nothing.lab.test.", 5, lambda e: None) is None


def test_a_wrong_key_is_refused_and_changes_nothing(server: knot.KnotServer):
    import base64
    records = _records(server, secret=base64.b64encode(b"x" * 32).decode())
    with pytest.raises(PermanentError, match="NOTAUTH|REFUSED|TSIG key"):
        records.point("www.lab.test.", "10.0.2.99", 5, lambda e: None)
    assert _dig(server, "www.lab.test.") == "600 10.0.1.5"


def test_the_key_file_must_be_private(server: knot.KnotServer, tmp_path: Path):
    key = server.key_file()
    settings = DnsSection(server=server.address, port=server.port, zone=server.zone,
                          key_name="ferry", key_file=str(key))
    assert records_from(settings, tmp_path) is not None
    key.chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        records_from(settings, tmp_path)
