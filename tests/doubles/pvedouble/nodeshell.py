"""The shell of a double's node, for the commands ferry runs over SSH on Proxmox nodes that the
API does not offer: ``pct unlock VMID`` (pve-container src/PVE/CLI/pct.pm ``unlock``: removes
the config's lock; the API has no unlock for containers). It stands in for
adapters.openvz.ssh.Shell (same ``run`` signature, same journal entry per command) and acts on
the double's world, so a test sees a lock cleared the way a node would clear it."""

from __future__ import annotations

import time

from adapters.base import Journal, JournalEntry, PermanentError
from adapters.openvz.ssh import Result
from tests.doubles.pvedouble.world import World


class NodeShell:
    """``pct unlock`` on the nodes of ``world``; any other command exits 127 (not found)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.commands: list[tuple[str, list[str]]] = []

    def run(self, node: str, argv: list[str], journal: Journal, *, timeout: float | None = None,
            check: bool = True, stdin: bytes | None = None) -> Result:
        started = time.monotonic()
        self.commands.append((node, list(argv)))
        result = self._pct(node, argv)
        journal(JournalEntry(host=node, what=list(argv), status=result.status,
                             duration_ms=(time.monotonic() - started) * 1000))
        if check and not result.ok:
            raise PermanentError(f"{node}: `{' '.join(argv)}` exited {result.status}: {result.err.strip()}")
        return result

    def _pct(self, node: str, argv: list[str]) -> Result:
        if argv[:2] != ["pct", "unlock"] or len(argv) != 3 or not argv[2].isdigit():
            return Result(127, "", f"sh: {argv[0]}: not found\n")
        with self.world.lock:
            guest = self.world.guests.get(int(argv[2]))
            if guest is None or guest.node != node:
                return Result(2, "", f"Configuration file 'nodes/{node}/lxc/{argv[2]}.conf' does not exist\n")
            guest.lock = None
        return Result(0, "", "")

    def close(self) -> None:
        return None
