"""Address records moved by RFC 2136 dynamic updates signed with TSIG (RFC 8945), via dnspython.

    [dns] config --Rfc2136Records--> backend (adapters/openvz/readdress.py) asks, per move:
        lower(name, low_ttl)   before the move: same addresses, low TTL; returns the old TTL
                               (the move starts once that old TTL has run out since)
        point(name, ip, ttl)   at cutover: the A (or AAAA) record names the new address;
                               after the forwarders retire: the old TTL again

Every update is one signed message to the zone's primary over TCP, and is journaled like an API
call (server, ``UPDATE name TYPE``, rcode, duration); the key never is. Reads ask the primary
directly, never a cache, so a resumed move sees what the server holds. Example (TOML)::

    [dns]
    server = "192.0.2.53"            # the zone's primary (it must accept signed updates)
    port = 53
    zone = "example.net"
    key_name = "ferry"
    key_file = "dns.key"             # the TSIG secret (base64), readable by its owner only
    algorithm = "hmac-sha256"
    low_ttl_s = 30                   # the TTL while the address moves
    names = { "101" = "www" }        # a container's record name; default: its hostname
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import TYPE_CHECKING

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from adapters.base import Backend, Journal, JournalEntry, PermanentError, TransientError
from fleet.errors import InputError
from service.config_sections import DnsSection  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from service.config import Config

#: Seconds one DNS exchange may take.
TIMEOUT_S = 5.0


def _rdtype(ip: str) -> dns.rdatatype.RdataType:
    return dns.rdatatype.AAAA if ipaddress.ip_address(ip).version == 6 else dns.rdatatype.A


class Rfc2136Records:
    """Reads and moves one zone's address records (adapters.openvz.readdress.AddressRecords)."""

    def __init__(self, settings: DnsSection, secret: str) -> None:
        self.settings = settings
        self.zone = dns.name.from_text(settings.zone)
        self.keyring = dns.tsigkeyring.from_text({settings.key_name: secret})
        self.keyname = dns.name.from_text(settings.key_name)
        self.algorithm = dns.name.from_text(settings.algorithm)

    @property
    def low_ttl_s(self) -> int:
        return self.settings.low_ttl_s

    def name_of(self, ct: str, hostname: str | None) -> str | None:
        """The record's owner name for container ``ct`` (``names``, else its hostname if it lies
        in the zone), None when ferry has no record to move for it."""
        try:
            if ct in self.settings.names:
                return dns.name.from_text(self.settings.names[ct], self.zone).to_text()
            if hostname and dns.name.from_text(hostname).is_subdomain(self.zone):
                return dns.name.from_text(hostname).to_text()
        except dns.exception.DNSException:  # a hostname from the container is untrusted text
            return None
        return None

    def read(self, name: str) -> tuple[int, list[str]] | None:
        """(TTL, addresses) of ``name``'s A and AAAA records on the primary; None if it has none."""
        ttl, found = None, []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            query = dns.message.make_query(name, rdtype)
            answer = self._exchange(query)
            for rrset in answer.answer:
                if rrset.rdtype == rdtype:
                    ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
                    found += [r.address for r in rrset]
        return (ttl, found) if ttl is not None else None

    def lower(self, name: str, ttl: int, journal: Journal) -> int | None:
        """Re-publish ``name``'s addresses with ``ttl``; returns the TTL they had (None: no record)."""
        current = self.read(name)
        if current is None:
            return None
        old_ttl, addresses = current
        update = self._update()
        for rdtype in {_rdtype(ip) for ip in addresses}:
            update.replace(name, ttl, rdtype, *[ip for ip in addresses if _rdtype(ip) == rdtype])
        self._send(update, f"UPDATE {name} TTL {old_ttl}->{ttl}", journal)
        return old_ttl

    def point(self, name: str, ip: str, ttl: int, journal: Journal) -> None:
        """``name`` has exactly one address record from now on: ``ip`` with ``ttl``."""
        update = self._update()
        other = dns.rdatatype.A if _rdtype(ip) == dns.rdatatype.AAAA else dns.rdatatype.AAAA
        update.delete(name, other)
        update.replace(name, ttl, _rdtype(ip), ip)
        self._send(update, f"UPDATE {name} {_rdtype(ip).name} {ip} TTL {ttl}", journal)

    def _update(self) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(self.zone, keyring=self.keyring, keyname=self.keyname,
                                        keyalgorithm=self.algorithm)

    def _exchange(self, message: dns.message.Message) -> dns.message.Message:
        try:
            return dns.query.tcp(message, self.settings.server, timeout=TIMEOUT_S,
                                 port=self.settings.port)
        except dns.tsig.PeerError as exc:  # the server does not know or accept ferry's key
            raise PermanentError(f"DNS server {self.settings.server} refused ferry's TSIG key "
                                 f"({exc.__class__.__name__}): check [dns] key_name, key_file and "
                                 "algorithm") from None
        except (OSError, dns.exception.DNSException) as exc:
            raise TransientError(f"DNS server {self.settings.server}:{self.settings.port}: "
                                 f"{exc.__class__.__name__} {exc}") from None

    def _send(self, update: dns.update.UpdateMessage, what: str, journal: Journal) -> None:
        started = time.monotonic()
        answer = self._exchange(update)
        rcode = answer.rcode()
        journal(JournalEntry(host=f"{self.settings.server}:{self.settings.port}", what=what,
                             status=int(rcode), duration_ms=(time.monotonic() - started) * 1000,
                             kind="api"))
        if rcode == dns.rcode.NOERROR:
            return
        error = TransientError if rcode == dns.rcode.SERVFAIL else PermanentError
        raise error(f"DNS update refused by {self.settings.server}: {dns.rcode.to_text(rcode)} "
                    f"({what}); check [dns] zone, key_name and the server's update ACL")


def records_from(settings: DnsSection, base: Path) -> Rfc2136Records | None:
    """The provider the ``[dns]`` table asks for (None when it names no server); the key file is
    read here, refused unless readable by its owner only."""
    from service.config import check_private_file

    if not settings.server:
        return None
    if not (settings.zone and settings.key_name and settings.key_file):
        raise InputError("dns", settings.server, "a DNS server needs zone, key_name and key_file")
    path = Path(settings.key_file) if Path(settings.key_file).is_absolute() else base / settings.key_file
    if not path.is_file():
        raise InputError("dns.key_file", str(path), "no such file")
    check_private_file(path, "dns.key_file")
    return Rfc2136Records(settings, path.read_text().strip())


def attach_records(backend: Backend, config: Config) -> Backend:
    """Give a backend that moves address records (one with a ``records`` attribute) the zone
    ``[dns]`` names; a backend without one and a config without ``[dns] server`` are unchanged."""
    if config.dns.server and hasattr(backend, "records"):
        base = config.path.parent if config.path else Path.cwd()
        backend.records = records_from(config.dns, base)  # type: ignore[attr-defined]
    return backend
