"""What operators expect of a command-line service: a version, a config found where configs live, a
simulated fleet that says so, a placement a script can read, a systemd unit that loads."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from service import config as config_module
from tests.conftest import REPO
from tests.integration.sim.test_cli import DEMO_FLEET, FERRY, ferry, write_config

UNIT = REPO / "config" / "systemd" / "ferry.service"


def test_version_names_the_installed_release() -> None:
    from importlib.metadata import version

    assert ferry("--version").stdout.strip() == f"ferry {version('ferry')}"


def test_without_any_config_ferry_says_where_one_is_found_and_acts_on_nothing(tmp_path: Path) -> None:
    if config_module.SYSTEM_CONFIG.exists():
        pytest.skip(f"{config_module.SYSTEM_CONFIG} exists on this machine")
    env = {k: v for k, v in os.environ.items() if k != "FERRY_CONFIG"}
    for args in (["jobs"], ["inventory"], ["evacuate", "n1", "--yes"]):
        result = subprocess.run([FERRY, *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                                stdin=subprocess.DEVNULL, timeout=120)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("ferry: error: --config: no config: pass --config FILE, set "
                                        "FERRY_CONFIG or write /etc/ferry/ferry.toml"), result.stderr
    assert list(tmp_path.iterdir()) == []  # no state directory appeared in the current directory
    offline = subprocess.run([FERRY, "plan", "evacuate", "n1", "--inventory", str(DEMO_FLEET), "--format", "json"],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert offline.returncode == 0, offline.stderr  # planning from a snapshot needs no fleet


def test_every_table_of_the_simulated_fleet_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for args in (["inventory"], ["jobs"], ["plan", "rebalance"]):
        out = ferry(*args, config=config).stdout
        titles = [line for line in out.splitlines() if line.strip() and line.strip()[0].isalpha()
                  and "[SIMULATED fleet]" in line]
        assert titles, (args, out)
    real = ferry("plan", "evacuate", "n1", "--inventory", str(DEMO_FLEET), "--format", "table").stdout
    assert "SIMULATED" not in real  # no config, a snapshot: nothing simulated is claimed


def test_place_prints_just_the_node_for_scripts(tmp_path: Path) -> None:
    args = ("plan", "place", "--cpus", "2", "--memory", "4096", "--disk", "20", "--inventory", str(DEMO_FLEET))
    best = ferry(*args, "--format", "name").stdout
    ranked = ferry(*args, "--format", "json").stdout
    assert best.endswith("\n") and best.strip() in ("n1", "n2", "n3", "n4", "n5", "n6")
    assert f'"best": "{best.strip()}"' in ranked
    none = ferry("plan", "place", "--cpus", "2", "--memory", "99999999", "--disk", "20", "--inventory",
                 str(DEMO_FLEET), "--format", "name", check=False)
    assert none.returncode == 3 and none.stdout == ""
    assert none.stderr.startswith("ferry: no node can take it (needs ")


def test_the_systemd_unit_loads_and_runs_a_command_ferry_has(tmp_path: Path) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(UNIT)
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[:2] == ["/usr/local/bin/ferry", "serve"]
    serve_help = ferry("serve", "--help").stdout
    for option in (a for a in argv[2:] if a.startswith("--")):
        assert option in serve_help, option
    assert unit["Service"]["Environment"] == f"FERRY_CONFIG={config_module.SYSTEM_CONFIG}"
    assert unit["Service"]["StateDirectory"] == config_module.SYSTEM_STATE_DIR.name
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    local = tmp_path / "ferry.service"  # the same unit, with this checkout's ferry as the binary
    local.write_text(UNIT.read_text().replace("/usr/local/bin/ferry", FERRY))
    verified = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr
