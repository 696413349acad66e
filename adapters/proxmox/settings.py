"""The ``[proxmox]`` table of ferry's config, checked once: every bad value is an InputError that
names the key (``proxmox.port``) and the value. The token secret is read here and kept only in
memory; nothing else in the adapter ever sees where it came from."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.errors import InputError

# PVE token ids: "user@realm!tokenid" (pve-access-control PVE::AccessControl, pve-tokenid format).
_TOKEN_ID_RE = re.compile(r"^[^\s:@!/]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$")
_STORAGE_RE = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.I)
_KNOWN = {
    "host", "port", "token_id", "token_secret_file", "token_secret_env", "verify_ssl", "ca_file",
    "timeout_s", "bwlimit_kib", "shutdown_timeout_s", "storage_map", "retention_hours", "backup_storage",
    "poll_interval_s", "task_timeout_s", "lock_wait_s", "get_retries", "presync", "ha_timeout_s",
    "ssh", "node_hosts", "fingerprint", "bridge_map",
}
_FINGERPRINT_RE = re.compile(r"^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$")
_BRIDGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,14}$")


@dataclass(frozen=True)
class ProxmoxSettings:
    host: str
    token_user: str
    token_name: str
    token_secret: str = field(repr=False)
    port: int = 8006
    verify_ssl: bool = True
    ca_file: str | None = None
    timeout_s: float = 10.0
    bwlimit_kib: int | None = None
    shutdown_timeout_s: int = 180
    storage_map: Mapping[str, str] = field(default_factory=dict)
    retention_hours: float = 72.0
    backup_storage: str | None = None
    poll_interval_s: float = 2.0
    task_timeout_s: float = 6 * 3600.0
    lock_wait_s: float = 600.0
    get_retries: int = 4
    presync: bool = True
    ha_timeout_s: float = 600.0
    #: SSH to the nodes (``[proxmox.ssh]``, the keys of ``[openvz]``: nodes, identity_file,
    #: known_hosts_file, forward_seconds, forward_quiet_s, hold_seconds, state_dir): the old node
    #: of a move that changes address forwards to the new one (readdress.py). None: it cannot.
    ssh: Any = None
    #: A container coming from another cluster (remote.py): the address each node answers the
    #: API on (``remote_migrate`` lands on the node its endpoint names; default: ``host``), the
    #: SHA-256 fingerprint of this cluster's API certificate (default: read from ferry's own
    #: verified connection), and ``{source_bridge = bridge_here}`` (default: each to itself).
    node_hosts: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    bridge_map: Mapping[str, str] = field(default_factory=dict)

    @property
    def token_id(self) -> str:
        return f"{self.token_user}!{self.token_name}"


def _bad(key: str, value: Any, why: str) -> InputError:
    return InputError(f"proxmox.{key}", value, why)


def _number(raw: Mapping[str, Any], key: str, default: float, *, minimum: float = 0.0,
            integer: bool = False) -> Any:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not float(value).is_integer()):
        raise _bad(key, value, "must be an integer" if integer else "must be a number")
    if value < minimum:
        raise _bad(key, value, f"must be at least {minimum:g}")
    return int(value) if integer else float(value)


def _read_secret(raw: Mapping[str, Any]) -> str:
    path, env = raw.get("token_secret_file"), raw.get("token_secret_env")
    if bool(path) == bool(env):
        raise _bad("token_secret_file", path, "set exactly one of token_secret_file and token_secret_env")
    if path:
        try:
            secret = Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _bad("token_secret_file", path, f"cannot read: {exc.strerror or exc.__class__.__name__}") from None
        if not secret:
            raise _bad("token_secret_file", path, "file is empty")
        mode = stat.S_IMODE(Path(str(path)).stat().st_mode)
        if mode & 0o077:  # a secret others can read is no secret (as ferry's own API token file)
            raise _bad("token_secret_file", path, f"the file is readable by group or others "
                       f"(mode {mode:04o}): chmod 600 it")
        return secret
    secret = os.environ.get(str(env), "").strip()
    if not secret:
        raise _bad("token_secret_env", env, "environment variable is unset or empty")
    return secret


def _storage_map(raw: Mapping[str, Any]) -> dict[str, str]:
    value = raw.get("storage_map", {}) or {}
    if not isinstance(value, Mapping):
        raise _bad("storage_map", value, "must be a table {source_storage = target_storage}")
    for src, dst in value.items():
        for item in (src, dst):
            if not isinstance(item, str) or not _STORAGE_RE.match(item):
                raise _bad(f"storage_map.{src}", item, "not a Proxmox storage id")
    return dict(value)


def _map(raw: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> dict[str, str]:
    """A ``{name = value}`` table whose values match ``pattern``."""
    value = raw.get(key, {}) or {}
    if not isinstance(value, Mapping):
        raise _bad(key, value, f"must be a table {{name = {what}}}")
    for name, item in value.items():
        if not isinstance(item, str) or not pattern.match(item):
            raise _bad(f"{key}.{name}", item, f"not a {what}")
    return dict(value)


def _fingerprint(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("fingerprint")
    if value is not None and (not isinstance(value, str) or not _FINGERPRINT_RE.match(value)):
        raise _bad("fingerprint", value, "must be a SHA-256 fingerprint, 32 hex pairs separated by ':'")
    return value.upper() if value else None


def _ssh(table: Any) -> Any:
    """``[proxmox.ssh]`` validated as an ``[openvz]`` table (the same SSH and forwarding keys)."""
    if table is None:
        return None
    from adapters.openvz.settings import load_settings

    try:
        return load_settings(table)
    except InputError as exc:
        raise InputError(f"proxmox.ssh.{exc.key.removeprefix('openvz.')}", exc.value, exc.why) from None


def parse_settings(raw: Mapping[str, Any]) -> ProxmoxSettings:
    """Validate the ``[proxmox]`` table into settings (reads the token secret)."""
    for key in raw:
        if key not in _KNOWN:
            raise _bad(key, raw[key], "unknown setting")
    host = raw.get("host")
    if not isinstance(host, str) or not re.fullmatch(r"[A-Za-z0-9.\-:\[\]]{1,253}", host):
        raise _bad("host", host, "must be a host name or IP address")
    token_id = raw.get("token_id")
    if not isinstance(token_id, str) or not _TOKEN_ID_RE.match(token_id):
        raise _bad("token_id", token_id, "must look like user@realm!tokenid")
    user, name = token_id.split("!", 1)
    verify = raw.get("verify_ssl", True)
    if not isinstance(verify, bool):
        raise _bad("verify_ssl", verify, "must be true or false")
    ca_file = raw.get("ca_file")
    if ca_file is not None and not Path(str(ca_file)).is_file():
        raise _bad("ca_file", ca_file, "no such file")
    port = _number(raw, "port", 8006, minimum=1, integer=True)
    if port > 65535:
        raise _bad("port", port, "must be at most 65535")
    backup = raw.get("backup_storage")
    if backup is not None and (not isinstance(backup, str) or not _STORAGE_RE.match(backup)):
        raise _bad("backup_storage", backup, "not a Proxmox storage id")
    presync = raw.get("presync", True)
    if not isinstance(presync, bool):
        raise _bad("presync", presync, "must be true or false")
    return ProxmoxSettings(
        ssh=_ssh(raw.get("ssh")), host=host, token_user=user, token_name=name, token_secret=_read_secret(raw), port=port,
        verify_ssl=verify, ca_file=str(ca_file) if ca_file else None,
        timeout_s=_number(raw, "timeout_s", 10.0, minimum=0.1),
        bwlimit_kib=_number(raw, "bwlimit_kib", None, minimum=1, integer=True),
        shutdown_timeout_s=_number(raw, "shutdown_timeout_s", 180, minimum=1, integer=True),
        storage_map=_storage_map(raw), retention_hours=_number(raw, "retention_hours", 72.0),
        backup_storage=backup, poll_interval_s=_number(raw, "poll_interval_s", 2.0, minimum=0.001),
        task_timeout_s=_number(raw, "task_timeout_s", 6 * 3600.0, minimum=0.1),
        lock_wait_s=_number(raw, "lock_wait_s", 600.0), get_retries=_number(raw, "get_retries", 4, minimum=1, integer=True),
        presync=presync, ha_timeout_s=_number(raw, "ha_timeout_s", 600.0, minimum=0.1),
        node_hosts=_map(raw, "node_hosts", re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,253}$"), "host name or IP address"),
        fingerprint=_fingerprint(raw), bridge_map=_map(raw, "bridge_map", _BRIDGE_RE, "bridge name"),
    )
