"""ferry's configuration: one TOML file (``--config FILE`` or ``FERRY_CONFIG``), documented in
``config/ferry.example.toml``. With no file at all, ferry runs against the built-in simulated
fleet, so that a first ``ferry inventory`` shows something real.

Every bad value becomes an InputError naming the key (``policy.max_parallel``) and the value,
before anything is created: every table is a pydantic model that refuses unknown keys (with a
"did you mean" hint), the file passes the same gates as snapshots (size, UTF-8, no control or bidi
characters, finite numbers; :mod:`fleet.document`), and the database URL is checked before use. The
``[proxmox]`` and ``[openvz]`` tables are checked by their backends when the backend is built
(they read secret and key files), still before any job exists.

Secrets never live here: ``[api] token_file`` names a file that must be readable by its owner only
(:func:`check_private_file`), and the state directory is created readable by its owner only.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from fleet.document import read_text
from fleet.errors import MISSING, InputError
from fleet.model import Id, NodeName
from fleet.networks import Networks
from fleet.policy import Policy
from fleet.snapshot import validate_model
from service.campaign_hooks import MaintenanceSection
from service.config_sections import DnsSection, NotifySection

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The built-in simulated fleet: in the source tree, or where an image put it (FERRY_DEMO_FLEET).
DEMO_FLEET = Path(os.environ.get("FERRY_DEMO_FLEET") or REPO_ROOT / "config" / "fleets" / "demo.yaml")
#: Where an installed ferry finds its config when neither --config nor FERRY_CONFIG names one.
SYSTEM_CONFIG = Path("/etc/ferry/ferry.toml")
#: The state of an installed ferry (the system config's default ``state_dir``), as the FHS wants.
SYSTEM_STATE_DIR = Path("/var/lib/ferry")
NO_CONFIG = (f"no config: pass --config FILE, set FERRY_CONFIG or write {SYSTEM_CONFIG} "
             "('ferry demo' shows ferry on the simulated fleet)")


class FerrySection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Which fleet ferry acts on. No default: the simulated fleet only when asked for.
    backend: Literal["sim", "proxmox", "openvz", "mixed"] | None = None
    #: SQLAlchemy URL of the job store (checked by :func:`check_database_url`).
    database: str = ""
    #: Relative to the config file's folder; default ``.ferry`` beside it, or /var/lib/ferry for
    #: the system config.
    state_dir: str | None = Field(default=None, min_length=1)
    #: Name this instance uses in claims and locks (defaults to host name + pid); the store's
    #: claim columns hold 128 characters.
    instance: str = Field(default="", max_length=128)


class EngineSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retry_attempts: int = Field(default=5, ge=1, le=50)
    retry_initial_s: float = Field(default=1.0, ge=0)
    retry_max_s: float = Field(default=60.0, ge=0)
    lease_s: float = Field(default=60.0, gt=0)
    #: Weight of the newest observation in the learned link throughput (EWMA).
    learn_weight: float = Field(default=0.3, gt=0, le=1)


class ApiSection(BaseModel):
    """``ferry serve``'s REST API. The token is a secret: it lives in a file or the environment."""

    model_config = ConfigDict(extra="forbid")
    #: File holding the bearer token (relative to the config file); FERRY_API_TOKEN overrides it.
    token_file: str = ""


def _window_text(text: str) -> str:
    from service.schedule import parse_windows

    try:
        parse_windows(text)
    except InputError as exc:
        raise ValueError(exc.why) from None
    return text


class ScheduleSection(BaseModel):
    """What ``ferry serve`` does on its own: poll for approved jobs, the nightly rebalance, windows."""

    model_config = ConfigDict(extra="forbid")
    #: Crontab expression for a nightly rebalance job ("" = none), e.g. "0 3 * * *".
    rebalance_cron: str = ""
    #: Maintenance windows such as "Sat 01:00-05:00"; jobs created with window=true start moves only inside.
    windows: list[Annotated[str, AfterValidator(_window_text)]] = Field(default_factory=list)
    #: IANA time zone of rebalance_cron and windows.
    timezone: str = "UTC"
    #: Seconds between two looks at the job store for approved jobs.
    poll_s: float = Field(default=5.0, gt=0, le=3600)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from service.schedule import time_zone

        try:
            time_zone(value)
        except InputError as exc:
            raise ValueError(exc.why) from None
        return value

    @field_validator("rebalance_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from service.schedule import cron_trigger

        try:
            if value:
                cron_trigger(value)
        except InputError as exc:
            raise ValueError(exc.why) from None
        return value


SimStep = Literal["preflight", "prepare", "presync-copy", "cutover-copy", "start", "verify", "cleanup", "rollback"]
SimFaultKind = Literal["transient", "fail", "refuse_live", "dest_full", "link_drop", "start_fails", "unreachable"]


class SimFault(BaseModel):
    """One injected fault: fires ``remaining`` times at ``step`` (for one container / method)."""

    model_config = ConfigDict(extra="forbid")
    kind: SimFaultKind
    step: SimStep
    ct: Id | None = None
    method: Literal["live", "restart", "dump"] | None = None
    #: Only on moves to this node (a destination that cannot take containers).
    target: NodeName | None = None
    remaining: int = Field(default=1, ge=0, le=1_000_000)


class SimSection(BaseModel):
    """The simulated fleet (``backend = "sim"``); see :mod:`adapters.sim`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    world_file: str | None = Field(default=None, min_length=1)
    fleet_file: str | None = Field(default=None, min_length=1)
    #: Simulated seconds per wall second.
    speedup: float = Field(default=200.0, gt=0, le=1e7)
    seed: int = Field(default=7, ge=0, le=2**63 - 1)
    faults: list[SimFault] = Field(default_factory=list, max_length=10_000)
    #: Chance of a transient fault per step.
    fault_rate: float = Field(default=0.0, ge=0, le=1)
    #: Slow-down factor per link {"a->b": 0.1}: the link runs at this fraction of its speed.
    link_factor: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}->[A-Za-z0-9._-]{1,64}$")],
                      Annotated[float, Field(gt=0, le=1000)]] = Field(default_factory=dict)


class RecoverySection(BaseModel):
    """Evacuating a dead node from its backups (``ferry evacuate N --from-backups``)."""

    model_config = ConfigDict(extra="forbid")
    #: The command (argv, ``{node}`` replaced by the dead node's name) that fences a node: an IPMI
    #: or Redfish power-off, a PDU outlet. It must exit 0 before any restored copy starts; empty:
    #: the operator confirms with ``--node-is-fenced``.
    fence_command: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=256)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ferry: FerrySection = Field(default_factory=FerrySection)
    engine: EngineSection = Field(default_factory=EngineSection)
    policy: Policy = Field(default_factory=Policy)
    api: ApiSection = Field(default_factory=ApiSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    sim: SimSection = Field(default_factory=SimSection)
    recovery: RecoverySection = Field(default_factory=RecoverySection)
    proxmox: dict[str, Any] = Field(default_factory=dict)
    openvz: dict[str, Any] = Field(default_factory=dict)
    #: Several clusters as one fleet (``backend = "mixed"``): ``clusters.NAME`` tables, each an
    #: [openvz] or [proxmox] table with ``platform`` (adapters/mixed.py).
    mixed: dict[str, Any] = Field(default_factory=dict)
    #: Subnets, gateways and address pools per node or site (fleet/networks.py).
    networks: Networks = Field(default_factory=Networks)
    #: The DNS zone whose address records follow moves to a new address (service/dns.py).
    dns: DnsSection = Field(default_factory=DnsSection)
    #: Campaign hooks and Proxmox HA maintenance (service/campaign_hooks.py).
    maintenance: MaintenanceSection = Field(default_factory=MaintenanceSection)
    #: Apprise URLs ferry tells events to (service/notify.py).
    notify: NotifySection = Field(default_factory=NotifySection)
    #: Where the file was read from (None: built-in defaults).
    path: Path | None = None

    @property
    def state_dir(self) -> Path:
        """Where the store, the simulated world and the traces live. Without a config file there
        is none: a state that followed the current directory would split one fleet's jobs."""
        if self.path is None and self.ferry.state_dir is None:
            raise InputError("--config", MISSING, NO_CONFIG)
        if self.ferry.state_dir is None and self.path is not None and self.path.parent == SYSTEM_CONFIG.parent:
            return SYSTEM_STATE_DIR
        base = self.path.parent if self.path else Path.cwd()
        return (base / (self.ferry.state_dir or ".ferry")).resolve()

    @property
    def backend(self) -> str:
        """The backend's name; a one-line InputError when no config chose one."""
        if self.ferry.backend is None:
            if self.path is None:
                raise InputError("--config", MISSING, NO_CONFIG)
            raise InputError("ferry.backend", MISSING, "is not set: choose proxmox, openvz or sim "
                             "(the simulated fleet)", source=str(self.path))
        return self.ferry.backend

    @property
    def database_url(self) -> str:
        if self.ferry.database:
            return self.ferry.database
        return f"sqlite:///{self.state_dir / 'ferry.db'}"

    def make_state_dir(self) -> Path:
        """Create the state directory (store, world, locks) readable by its owner only."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.state_dir

    def backend_settings(self) -> dict[str, Any]:
        """The backend's table with relative paths resolved against the config file's folder."""
        table = getattr(self, self.backend)
        settings = table.model_dump(exclude_unset=True) if isinstance(table, BaseModel) else dict(table)
        if self.backend == "sim":
            settings.setdefault("world_file", str(self.state_dir / "world.json"))
            settings.setdefault("fleet_file", str(DEMO_FLEET))
        base = self.path.parent if self.path else Path.cwd()
        return _resolve_files(settings, base)


def _resolve_files(table: dict[str, Any], base: Path) -> dict[str, Any]:
    """``table`` with every relative ``*_file`` path, in nested tables too ([mixed.clusters.X],
    [proxmox.ssh]), made absolute against ``base``."""
    out = dict(table)
    for key, value in out.items():
        if isinstance(value, dict):
            out[key] = _resolve_files(value, base)
        elif key.endswith("_file") and isinstance(value, str) and value and not os.path.isabs(value):
            out[key] = str(base / value)
    return out


def check_database_url(config: Config) -> None:
    """Refuse a job store URL that cannot work, before anything opens it: one line naming
    ``ferry.database`` (its password masked), never a driver's traceback."""
    raw = config.ferry.database
    if not raw:
        return  # the default store, in the state directory (and SQLAlchemy not imported for nothing)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise InputError("ferry.database", raw.split("@")[-1], "is not a database URL: use "
                         "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB") from None
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise InputError("ferry.database", shown, "unsupported database: use sqlite or postgresql")
    try:
        url.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError) as exc:
        raise InputError("ferry.database", shown, f"no such database driver here: {exc}") from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        folder = Path(url.database).parent
        if not folder.is_dir():
            raise InputError("ferry.database", shown, f"the folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError("ferry.database", shown, f"the folder {folder} is not writable")


def check_private_file(path: Path, key: str) -> None:
    """A file holding a secret must be readable by its owner only: refuse one that group or others
    can read, with the fix. (The path is not repeated: ``key`` names a secret, so the line hides
    its value, and a secret pasted into a ``*_file`` key stays hidden too.)"""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InputError(key, str(path), f"the file is readable by group or others (mode {mode:04o}): "
                         "chmod 600 it")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config named by ``path``, else ``FERRY_CONFIG``, else /etc/ferry/ferry.toml; with
    none of them, built-in defaults that plan offline (``--inventory``) but name no fleet."""
    chosen = path or os.environ.get("FERRY_CONFIG")
    if not chosen:
        if not SYSTEM_CONFIG.is_file():
            return Config()
        chosen = SYSTEM_CONFIG
    key = "--config" if path else "FERRY_CONFIG" if chosen != SYSTEM_CONFIG else str(SYSTEM_CONFIG)
    file = Path(chosen)
    text = read_text(file, key=key)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(key, str(file), f"invalid TOML: {exc}") from None
    except RecursionError:
        raise InputError(key, str(file), "invalid TOML: nested too deeply") from None
    config = validate_model(Config, data, source=str(file))
    config = config.model_copy(update={"path": file.resolve()})
    check_database_url(config)
    return config
