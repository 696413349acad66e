"""Proxmox HA node maintenance, set and cleared by ferry (read: adapters.proxmox.observe.node_states).

    ferry node drain N (configured) --maintenance_argv(N, enable=True)--> SSH to a cluster node:
        ha-manager crm-command node-maintenance enable N
    ferry node restore N            --maintenance_argv(N, enable=False)--> ... disable N

Proxmox VE has no REST endpoint for it: ``ha-manager crm-command node-maintenance`` (pve-ha-manager,
PVE::CLI::ha_manager) queues a CRM command; the CRM records ``node_request.N.maintenance`` and the
node's LRM moves its HA services away and enters maintenance mode, which
``GET /cluster/ha/status/manager_status`` then reports. The command runs over SSH as argv, never
through a shell string built from the node name, and is journaled like every remote command.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from adapters.base import Journal, PermanentError

#: A PVE node name (pve-cluster: a DNS label): anything else is refused before it reaches SSH.
_NODE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


class CommandRunner(Protocol):
    """Runs argv on a host and journals it (adapters.openvz.ssh.Shell has this shape)."""

    def run(self, node: str, argv: list[str], journal: Journal, *, timeout: float | None = None,
            check: bool = True, stdin: bytes | None = None) -> Any: ...


def maintenance_argv(node: str, enable: bool) -> list[str]:
    """``ha-manager crm-command node-maintenance enable|disable NODE`` for a valid node name."""
    if not isinstance(node, str) or not _NODE_NAME.match(node):
        raise PermanentError(f"refusing HA maintenance for {node!r}: not a Proxmox node name")
    return ["ha-manager", "crm-command", "node-maintenance", "enable" if enable else "disable", node]


def set_node_maintenance(runner: CommandRunner, host: str, node: str, enable: bool, journal: Journal) -> None:
    """Ask the HA stack, from cluster node ``host``, to put ``node`` in maintenance or take it out;
    the CRM acts on its next round, and discovery reads the result from the manager status."""
    runner.run(host, maintenance_argv(node, enable), journal)
