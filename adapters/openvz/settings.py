"""The ``[openvz]`` table of ferry's config, validated into :class:`OpenVZSettings`.

Example (TOML)::

    backend = "openvz"
    [openvz]
    identity_file = "/etc/ferry/id_ed25519"         # key ferry logs in with (root on nodes)
    known_hosts_file = "/etc/ferry/known_hosts"     # host keys; an unknown key is refused
    strict_host_key_checking = true                 # false only for labs: unknown keys accepted
    connect_timeout_s = 10                          # TCP connect + SSH handshake + auth
    command_timeout_s = 3600                        # longest single remote command (a big rsync)
    keepalive_s = 15                                # SSH keepalive on idle connections
    retention_hours = 24                            # keep the source area this long after a move
    forward_seconds = 360                           # old address forwards to the new, at most this long
    forward_quiet_s = 60                            # ... retiring once no client came this long (0: never)
    hold_seconds = 30                               # same address: hold clients during the switch
    dns_hook = ["/usr/local/bin/ferry-dns", "--zone", "example.net"]  # + OLD_IP NEW_IP
    rsync_options = ["-aHAX", "--delete", "--numeric-ids", "--sparse", "--whole-file"]  # --whole-file: LAN links; drop on slow WAN
    presync_max_rounds = 5                          # repeat pre-copy while the delta shrinks
    free_space_margin = 0.10                        # destination needs private area x 1.10
    max_clock_skew_s = 2.0
    backup_max_age_hours = 24                       # a move that asks for a backup needs one this fresh
    [openvz.nodes.ovz1]
    host = "ovz1.example.net"                       # address ferry and the other nodes use
    port = 22
    user = "root"
    [openvz.backups]                                # vzdump archives, for evacuating a dead node
    dir = "/backup/vz/{node}"                       # {node}: the node whose containers they are
    host = { host = "backup1.example.net" }         # optional: on this host over SSH; without:
                                                    # a path every node mounts (NFS)

Every invalid value becomes :class:`fleet.errors.InputError` naming ``openvz.<key>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleet.errors import InputError
from fleet.model import NodeName
from fleet.snapshot import validate_model


class NodeAccess(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")


class BackupLocation(BaseModel):
    """Where the nodes' vzdump archives are kept (adapters/openvz/backups.py reads them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str = Field(pattern=r"^/[A-Za-z0-9._/{}-]+$")
    host: NodeAccess | None = None

    def dir_of(self, node: str) -> str:
        return self.dir.replace("{node}", node)


class OpenVZSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: dict[NodeName, NodeAccess] = Field(min_length=1)
    identity_file: Path
    known_hosts_file: Path
    strict_host_key_checking: bool = True
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    command_timeout_s: float = Field(default=3600.0, gt=0)
    keepalive_s: float = Field(default=15.0, ge=0)
    retention_hours: float = Field(default=24.0, ge=0)
    forward_seconds: float = Field(default=360.0, ge=0)
    forward_quiet_s: float = Field(default=60.0, ge=0)
    hold_seconds: float = Field(default=30.0, ge=0)
    dns_hook: list[str] = Field(default_factory=list)
    rsync_options: list[str] = Field(
        default_factory=lambda: ["-aHAX", "--delete", "--numeric-ids", "--sparse", "--whole-file"])
    presync_max_rounds: int = Field(default=5, ge=1, le=50)
    free_space_margin: float = Field(default=0.10, ge=0, le=10)
    max_clock_skew_s: float = Field(default=2.0, gt=0)
    backup_max_age_hours: float = Field(default=24.0, gt=0)
    state_dir: str = Field(default="/var/lib/ferry", pattern=r"^/[A-Za-z0-9._/-]+$")
    dump_dir: str = Field(default="/var/lib/vz/dump", pattern=r"^/[A-Za-z0-9._/-]+$")
    backups: BackupLocation | None = None

    @field_validator("rsync_options")
    @classmethod
    def _dash_options_only(cls, value: list[str]) -> list[str]:
        for opt in value:
            if not opt.startswith("-") or "\n" in opt:
                raise ValueError(f"{opt!r} is not an rsync option (must start with '-')")
        return value

    @field_validator("identity_file", "known_hosts_file")
    @classmethod
    def _readable(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError("file does not exist")
        return value


def load_settings(settings: Mapping[str, Any]) -> OpenVZSettings:
    """Validate the ``[openvz]`` table; the first problem becomes one InputError line."""
    if not isinstance(settings, Mapping):
        raise InputError("openvz", settings, "must be a table")
    try:
        return validate_model(OpenVZSettings, dict(settings))
    except InputError as exc:
        raise InputError(f"openvz.{exc.key}", exc.value, exc.why) from None
