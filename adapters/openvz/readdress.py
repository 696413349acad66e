"""The DNS side of a move that changes a container's address, kept on the source node.

    prepare:  records.lower(name, low TTL) -> old TTL; "<name> <old TTL> <epoch>" in <state>/dns;
              the move goes on once the old TTL has run out since (clients' caches expired)
    switch:   records.point(name, NEW, low TTL)      (after the old address forwards to the new)
    retire:   records.point(name, NEW, old TTL)      (once the forwarders stopped: nobody is left)
    rollback: records.point(name, OLD, old TTL)      (the source runs with its address again)

What a provider must offer is :class:`AddressRecords` (service/dns.py implements it with RFC 2136
updates); without one, only ``openvz.dns_hook`` is run. The state file makes every step
idempotent after a crash: a TTL is lowered once, so the TTL recorded is always the original.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from adapters.base import Cancelled, Journal
from adapters.openvz.ssh import Shell

#: The most a move waits for an old TTL to run out (a week-long TTL is a configuration error).
MAX_WAIT_S = 86400.0


class AddressRecords(Protocol):
    """A DNS zone ferry may change: record names per container, TTL lowering, re-pointing."""

    low_ttl_s: int

    def name_of(self, ct: str, hostname: str | None) -> str | None: ...

    def lower(self, name: str, ttl: int, journal: Journal) -> int | None: ...

    def point(self, name: str, ip: str, ttl: int, journal: Journal) -> None: ...


def _read(shell: Shell, node: str, state: str, journal: Journal) -> tuple[str, int, float] | None:
    words = shell.run(node, ["sh", "-c", 'cat "$1/dns" 2>/dev/null; true', "ferry", state],
                      journal).out.split()
    return (words[0], int(words[1]), float(words[2])) if len(words) == 3 else None


def lower_ahead(shell: Shell, records: AddressRecords, node: str, state: str, ct: str,
                hostname: str | None, journal: Journal, cancelled: Callable[[], bool]) -> float:
    """Lower the record's TTL (once per move) and wait until the old TTL has run out since.
    Returns the seconds waited; nothing to do when the container has no record."""
    found = _read(shell, node, state, journal)
    if found is None:
        name = records.name_of(ct, hostname)
        old = records.lower(name, records.low_ttl_s, journal) if name else None
        if name is None or old is None:
            return 0.0
        found = (name, old, time.time())
        shell.run(node, ["sh", "-c", 'printf "%s\\n" "$2" > "$1/dns"', "ferry", state,
                         f"{found[0]} {found[1]} {found[2]:.3f}"], journal)
    ready_at = found[2] + min(found[1], MAX_WAIT_S)
    started = time.monotonic()
    while (left := ready_at - time.time()) > 0:
        if cancelled():
            raise Cancelled(f"cancelled while waiting for the DNS TTL of {found[0]} to run out")
        time.sleep(min(left, 0.5))
    return time.monotonic() - started


def switch(shell: Shell, records: AddressRecords, node: str, state: str, new_ip: str,
           journal: Journal) -> None:
    """Point the record at the new address, still with the low TTL."""
    found = _read(shell, node, state, journal)
    if found is not None:
        records.point(found[0], new_ip.split("/")[0], records.low_ttl_s, journal)


def restore(shell: Shell, records: AddressRecords, node: str, state: str, ip: str,
            journal: Journal) -> None:
    """The record names ``ip`` with its original TTL again; forgets the move's DNS state."""
    found = _read(shell, node, state, journal)
    if found is not None:
        records.point(found[0], ip.split("/")[0], found[1], journal)
        shell.run(node, ["rm", "-f", f"{state}/dns"], journal)
