"""Shared fixtures: small fleets, sim worlds and ferry runtimes in temporary directories."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Config, EngineSection, FerrySection
from service.runtime import Runtime

#: Running the suite on several workers (``make test``): the lab's tests stay on one.
pytest_plugins = ["tests.parallel"]

HERE = Path(__file__).parent
SMALL_FLEET = HERE / "doubles" / "fleets" / "small.yaml"
REPO = HERE.parent


def sim_config(tmp: Path, fleet: Path = SMALL_FLEET, speedup: float = 20000.0, **sim: object) -> Config:
    return Config(
        ferry=FerrySection(backend="sim", state_dir=str(tmp / "state")),
        engine=EngineSection(retry_attempts=4, retry_initial_s=0.01, retry_max_s=0.05),
        sim={"fleet_file": str(fleet), "speedup": speedup, "world_file": str(tmp / "state" / "world.json"), **sim},
    )


@pytest.fixture
def small_fleet(tmp_path: Path) -> Path:
    target = tmp_path / "small.yaml"
    shutil.copy(SMALL_FLEET, target)
    return target


@pytest.fixture
def sim_runtime(tmp_path: Path) -> Runtime:
    return Runtime(sim_config(tmp_path))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    from tests.doubles.postgres_cluster import postgres_cluster

    try:
        cluster = postgres_cluster()
        url = cluster.__enter__()
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no PostgreSQL server here: {exc}")
    yield url
    cluster.__exit__(None, None, None)

