"""Proxmox VE backend: ferry drives a PVE cluster through its REST API with proxmoxer.

    create_backend({...[proxmox] table...}) -> ProxmoxBackend
        discover() --------------------> inventory.py (resources, HA, configs -> Inventory)
        preflight..cleanup, rollback --> migrate.py ("live"/"restart": restart-mode migration,
                                         replication presync, HA through the HA stack)
                                     --> dump.py    ("dump": vzdump -> restore -> net -> start)
                                           identity.py (the source's identity, recorded on the copy,
                                                        checked before any retire or purge)
        (mixed fleets) another cluster -> remote.py ("remote_migrate", else vzdump -> restore)
        every call ------------------> client.py (journal entry, redaction, retry policy)
                                         tasks.py (follow UPIDs, judge exit status)

Settings (the ``[proxmox]`` table of ferry's config, checked by :func:`parse_settings`; a bad
value raises fleet.errors.InputError naming ``proxmox.<key>`` and the value):

==================== ======================================================================
host                 API host name or IP (required)
port                 API port, default 8006
token_id             API token, ``user@realm!tokenid`` (required)
token_secret_file    file holding the token secret, readable by its owner only (chmod 600; exactly one
                     of this and token_secret_env)
token_secret_env     environment variable holding the token secret
verify_ssl           verify the API's TLS certificate, default true
ca_file              CA bundle to verify against (a self-signed PVE CA: /etc/pve/pve-root-ca.pem)
timeout_s            per-request timeout, default 10
bwlimit_kib          migration / backup bandwidth limit in KiB/s (API ``bwlimit``); default none
shutdown_timeout_s   seconds a CT gets to shut down in a restart migration, default 180
storage_map          {source_storage = target_storage}, sent as ``target-storage``
retention_hours      how long a dump-moved source is kept, stopped, default 72 (cleanup raises
                     CleanupPending until then; a later cleanup destroys it); 0: at once
backup_storage       shared storage (content "backup") used by the dump fallback
presync              pre-seed local ZFS with a replication job before a migration, default true
poll_interval_s      task / state polling interval, default 2
task_timeout_s       longest a task may run before ferry stops waiting (and retries), default 6 h
lock_wait_s          longest ferry waits for a CT lock (e.g. a backup) to clear, default 600
ha_timeout_s         longest ferry waits for the HA stack to act on a request, default 600
get_retries          attempts for an idempotent GET on transient failures, default 4
ssh                  SSH to the nodes, a table with the keys of [openvz] (nodes, identity_file,
                     known_hosts_file, forward_seconds, forward_quiet_s, hold_seconds, state_dir,
                     dump_dir): the old node of a move to a new address forwards it while DNS
                     moves (readdress.py); an OpenVZ archive lands in dump_dir (mixed fleets);
                     ``pct unlock`` of a source remote_migrate left locked (remote.py)
node_hosts           {node = API address}: where a move from another cluster's remote_migrate
                     lands (its endpoint's host); default ``host`` (remote.py)
fingerprint          SHA-256 fingerprint of this cluster's API certificate, sent in the endpoint;
                     default: read over ferry's own verified TLS connection
bridge_map           {source_bridge = bridge_here} for containers arriving from another cluster
                     (``target-bridge``); default: each bridge to itself
==================== ======================================================================

Every endpoint and parameter the adapter sends is listed in :mod:`adapters.proxmox.endpoints`
with the upstream source that defines it (the pve-docs API viewer is generated from those
schemas); the end-to-end tests check every journaled call against that table.

The token secret is read once and sent only in the Authorization header; it never appears in
journal entries or logs. Retry policy: see :mod:`adapters.proxmox.client`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import Backend
from adapters.proxmox.backend import ProxmoxBackend
from adapters.proxmox.settings import ProxmoxSettings, parse_settings


def create_backend(settings: Mapping[str, Any]) -> Backend:
    """A ProxmoxBackend from the ``[proxmox]`` table (raises InputError on a bad value)."""
    return ProxmoxBackend(parse_settings(settings))


__all__ = ["ProxmoxBackend", "ProxmoxSettings", "create_backend", "parse_settings"]
