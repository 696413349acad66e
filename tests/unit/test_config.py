"""Configuration: the documented example loads, FERRY_CONFIG is honoured, paths resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.errors import InputError
from service.config import DEMO_FLEET, load_config
from tests.conftest import REPO


def test_the_example_config_is_valid_and_uses_the_documented_defaults() -> None:
    config = load_config(REPO / "config" / "ferry.example.toml")
    assert config.ferry.backend == "sim"
    assert (config.policy.max_parallel, config.policy.max_outgoing_per_node) == (8, 2)
    assert config.engine.retry_attempts == 5
    assert config.database_url.endswith(".ferry/ferry.db") and config.database_url.startswith("sqlite:///")


def test_ferry_config_env_is_used_and_relative_paths_follow_the_file(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "fleets").mkdir()
    (tmp_path / "conf.toml").write_text('[ferry]\nstate_dir = "st"\n[sim]\nfleet_file = "fleets/x.yaml"\n')
    monkeypatch.setenv("FERRY_CONFIG", str(tmp_path / "conf.toml"))
    config = load_config()
    settings = config.backend_settings()
    assert settings["fleet_file"] == str(tmp_path / "fleets" / "x.yaml")
    assert settings["world_file"] == str(tmp_path / "st" / "world.json")


def test_no_config_means_the_built_in_simulated_fleet(monkeypatch) -> None:
    monkeypatch.delenv("FERRY_CONFIG", raising=False)
    assert load_config().backend_settings()["fleet_file"] == str(DEMO_FLEET)


@pytest.mark.parametrize(("text", "key"), [
    ('[ferry]\nbackend = "xen"\n', "ferry.backend='xen'"),
    ("[engine]\nretry_attempts = 0\n", "engine.retry_attempts=0"),
    ("[policy]\naggressiveness = 9\n", "policy.aggressiveness=9"),
    ("[nonsense]\nx = 1\n", "nonsense"),
    ("[policy\n", "--config="),
])
def test_bad_config_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    assert key in str(info.value) and "\n" not in str(info.value)
