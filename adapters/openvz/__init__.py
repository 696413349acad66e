"""OpenVZ backend: moves containers between OpenVZ nodes over SSH (paramiko).

    config [openvz] --settings.load_settings--> OpenVZSettings
    engine --MoveSpec--> backend.OpenVZBackend --argv--> ssh.Shell --> node: vzctl, vzlist,
                             |     |      |      |                     vzmigrate, vzdump, rsync,
                        checks transfer delta forwarding               socat, iptables, arping
                             |     (rounds) (final pass over what changed)
                  teardown: cleanup | rollback      observe: discover, observe, the reads the
                          |                                     steps share (status, config, markers)
                          retire (what cleanup may do now; CleanupPending for the rest)
                             \\--- inventory (pure parsers) ---> fleet.model.Inventory

Entry point for the service: :func:`create_backend`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import Backend
from adapters.openvz.backend import OpenVZBackend
from adapters.openvz.settings import OpenVZSettings, load_settings

__all__ = ["OpenVZBackend", "OpenVZSettings", "create_backend", "load_settings"]


def create_backend(settings: Mapping[str, Any]) -> Backend:
    """Build the backend from the ``[openvz]`` table; bad values raise InputError."""
    return OpenVZBackend(load_settings(settings))
