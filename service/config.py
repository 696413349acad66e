"""ferry's configuration: one TOML file (``--config FILE`` or ``FERRY_CONFIG``), documented in
``config/ferry.example.toml``. With no file at all, ferry runs against the built-in simulated
fleet, so that a first ``ferry inventory`` shows something real.

Every bad value becomes an InputError naming the key (``policy.max_parallel``) and the value.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from fleet.errors import InputError
from fleet.policy import Policy
from fleet.snapshot import validate_model

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The built-in simulated fleet: in the source tree, or where an image put it (FERRY_DEMO_FLEET).
DEMO_FLEET = Path(os.environ.get("FERRY_DEMO_FLEET") or REPO_ROOT / "config" / "fleets" / "demo.yaml")


class FerrySection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["sim", "proxmox", "openvz"] = "sim"
    #: SQLAlchemy URL of the job store; relative sqlite paths are under state_dir.
    database: str = ""
    state_dir: str = ".ferry"
    #: Name this instance uses in claims and locks (defaults to host name + pid).
    instance: str = ""


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
    from service.schedule import parse_window

    try:
        parse_window(text)
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


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ferry: FerrySection = Field(default_factory=FerrySection)
    engine: EngineSection = Field(default_factory=EngineSection)
    policy: Policy = Field(default_factory=Policy)
    api: ApiSection = Field(default_factory=ApiSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    sim: dict[str, Any] = Field(default_factory=dict)
    proxmox: dict[str, Any] = Field(default_factory=dict)
    openvz: dict[str, Any] = Field(default_factory=dict)
    #: Where the file was read from (None: built-in defaults).
    path: Path | None = None

    @property
    def state_dir(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        return (base / self.ferry.state_dir).resolve()

    @property
    def database_url(self) -> str:
        if self.ferry.database:
            return self.ferry.database
        return f"sqlite:///{self.state_dir / 'ferry.db'}"

    def backend_settings(self) -> dict[str, Any]:
        """The backend's table with relative paths resolved against the config file's folder."""
        settings = dict(getattr(self, self.ferry.backend))
        if self.ferry.backend == "sim":
            settings.setdefault("world_file", str(self.state_dir / "world.json"))
            settings.setdefault("fleet_file", str(DEMO_FLEET))
        base = self.path.parent if self.path else Path.cwd()
        for key, value in settings.items():
            if key.endswith("_file") and isinstance(value, str) and value and not os.path.isabs(value):
                settings[key] = str(base / value)
        return settings


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config named by ``path``, else ``FERRY_CONFIG``, else built-in defaults."""
    chosen = path or os.environ.get("FERRY_CONFIG")
    if not chosen:
        return Config()
    key = "--config" if path else "FERRY_CONFIG"
    file = Path(chosen)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(key, str(file), "no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(key, str(file), f"cannot read: {exc.__class__.__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(key, str(file), f"invalid TOML: {exc}") from None
    config = validate_model(Config, data, source=str(file))
    return config.model_copy(update={"path": file.resolve()})
