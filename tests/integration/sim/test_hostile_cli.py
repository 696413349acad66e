"""The real ``ferry`` command against hostile input: markup names are shown as written in table
mode, and every malformed file or config ends in exit 2, one line on stderr, no traceback, and the
store and the simulated world exactly as they were."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL_FLEET
from tests.integration.sim.test_cli import FERRY, REPO, assert_one_line_error

#: Names a customer may choose: Rich markup, a fake link, a fake red error, an emoji shortcode.
MARKUP_NAMES = {"101": "[/bold]", "102": "[link=https://evil.example]pay here[/link]",
                "103": "[bold red]ERROR: disk failed[/]", "104": "[/]", "105": ":warning: [red"}
#: Table mode, wide enough that no name is cut; the code of this tree (see test_cli.ferry).
ENV = {**os.environ, "COLUMNS": "300", "PYTHONPATH": str(REPO)}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FERRY, *args], capture_output=True, text=True, timeout=180, cwd=REPO,
                          stdin=subprocess.DEVNULL, env=ENV)


def markup_fleet(folder: Path) -> Path:
    fleet = yaml.safe_load(SMALL_FLEET.read_text())
    for ct in fleet["containers"]:
        ct["name"] = MARKUP_NAMES.get(ct["id"], ct["name"])
    path = folder / "markup.json"
    path.write_text(json.dumps(fleet))
    return path


def config_text(state: Path, fleet: Path, extra: str = "") -> str:
    return (f'[ferry]\nbackend = "sim"\nstate_dir = "{state}"\n[engine]\nretry_initial_s = 0.01\n'
            f'retry_max_s = 0.05\n[sim]\nfleet_file = "{fleet}"\nspeedup = 20000.0\n{extra}')


def state_of(state: Path) -> tuple[bytes, list[str]]:
    """The world file's bytes and the store's rows (the WAL may be checkpointed by any reader, so
    the store is compared by content, not by file bytes)."""
    with sqlite3.connect(state / "ferry.db") as db:
        rows = list(db.iterdump())
    return (state / "world.json").read_bytes(), rows


def test_markup_names_are_shown_as_written_in_plans_and_in_an_evacuation(tmp_path: Path) -> None:
    fleet = markup_fleet(tmp_path)
    plan = run("plan", "evacuate", "a", "--inventory", str(fleet))
    assert plan.returncode == 0 and "Traceback" not in plan.stderr, plan.stderr
    config = tmp_path / "ferry.toml"
    config.write_text(config_text(tmp_path / "state", fleet))
    evacuation = run("--config", str(config), "evacuate", "a", "--yes")
    assert evacuation.returncode == 0, evacuation.stderr
    for out in (plan.stdout, evacuation.stdout):
        for ct, name in MARKUP_NAMES.items():
            assert f"{ct} {name}" in out, (name, out)
    assert "job 1: succeeded" in evacuation.stdout


def hostile_files(folder: Path) -> dict[str, Path]:
    fleet = yaml.safe_load(SMALL_FLEET.read_text())
    bidi = json.loads(json.dumps(fleet))
    bidi["containers"][0]["name"] = "web\u202e101"
    files = {
        "bomb.yaml": "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nnodes: [*c, *c, *c, *c, *c, *c, *c]\n",
        "nan.json": json.dumps(fleet).replace('"memory_mb": 4096', '"memory_mb": NaN', 1),
        "bidi.json": json.dumps(bidi),
        "truncated-plan.json": '{"version": 1, "goal": {"kind": "evacuate", "nodes": ["a"]},\n',
        "alias-plan.yaml": "goal: &g {kind: evacuate, nodes: [a]}\nother: *g\n",
        "binary.json": "\x00\x01\x02",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = folder / name
        paths[name].write_text(content)
    return paths


CONFIG_MISTAKES = {
    "fault_rate": ("fault_rate = 2\n", "sim.fault_rate=2"),
    "typo": ("fualt_rate = 0.1\n", "did you mean 'fault_rate'?"),
    "secret": ("token = \"s3cr3t-s3cr3t-s3cr3t\"\n", "sim.token=(value hidden)"),
}


def test_hostile_files_and_configs_exit_2_in_one_line_and_change_nothing(tmp_path: Path) -> None:
    state, fleet = tmp_path / "state", markup_fleet(tmp_path)
    good = tmp_path / "good.toml"
    good.write_text(config_text(state, fleet))
    assert run("--config", str(good), "evacuate", "b", "--yes").returncode == 0  # a store and a world
    before = state_of(state)
    files = hostile_files(tmp_path)
    cases = [(("plan", "evacuate", "a", "-i", str(files["bomb.yaml"])), "aliases are not accepted"),
             (("plan", "evacuate", "a", "-i", str(files["nan.json"])), "must be a finite number"),
             (("plan", "evacuate", "a", "-i", str(files["bidi.json"])), "containers[0].name='web\\u202e101'"),
             (("plan", "evacuate", "a", "-i", str(files["binary.json"])), "is binary"),
             (("--config", str(good), "run", str(files["truncated-plan.json"]), "--yes"), "invalid JSON"),
             (("--config", str(good), "run", str(files["alias-plan.yaml"]), "--yes"), "aliases")]
    for name, (extra, needle) in CONFIG_MISTAKES.items():
        bad = tmp_path / f"{name}.toml"
        bad.write_text(config_text(state, fleet, extra))
        cases.append((("--config", str(bad), "evacuate", "a", "--yes"), needle))
    baddb = tmp_path / "baddb.toml"
    baddb.write_text(config_text(state, fleet).replace(
        'backend = "sim"', 'backend = "sim"\ndatabase = "mysql://ferry:hunter2@db/ferry"'))
    cases.append((("--config", str(baddb), "jobs"), "unsupported database"))
    for args, needle in cases:
        result = run(*args)
        assert_one_line_error(result, needle)
        assert "s3cr3t" not in result.stderr and "hunter2" not in result.stderr and "\u202e" not in result.stderr
    assert state_of(state) == before
    print(f"\nCLI: {len(cases)} hostile inputs, each exit 2 with one line, the state unchanged")


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_serve_refuses_a_token_file_others_can_read(tmp_path: Path, mode: int) -> None:
    token = tmp_path / "api-token"
    token.write_text("a-token-of-thirty-two-characters\n")
    token.chmod(mode)
    config = tmp_path / "ferry.toml"
    config.write_text(config_text(tmp_path / "state", SMALL_FLEET) + '[api]\ntoken_file = "api-token"\n')
    result = subprocess.run([FERRY, "--config", str(config), "serve", "--port", "1"], capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL,
                            env={k: v for k, v in ENV.items() if k != "FERRY_API_TOKEN"})
    assert_one_line_error(result, "api.token_file=(value hidden)", "chmod 600")
    assert "thirty-two" not in result.stderr


def test_api_bodies_pass_the_same_gates(tmp_path: Path) -> None:
    from service.runtime import Runtime
    from tests.conftest import sim_config
    from tests.integration.sim.test_api import client_for, hand_plan

    api = client_for(Runtime(sim_config(tmp_path)))
    fleet = yaml.safe_load(SMALL_FLEET.read_text())
    fleet["containers"][1]["memory_mb"] = float("nan")  # Python's json writes NaN and reads it back
    answer = api.post("/v1/plans/evacuate", content=json.dumps({"nodes": ["a"], "inventory": fleet}),
                      headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "inventory: containers[1].memory_mb=nan" in answer.json()["error"]
    plan = hand_plan()
    plan["moves"][0]["reason"] = "ok\x1b]8;;https://evil.example\x07"
    answer = api.post("/v1/jobs", json={"plan": plan})
    assert answer.status_code == 400 and "moves[0].reason=" in answer.json()["error"], answer.text
    assert "\x1b" not in answer.json()["error"] and api.get("/v1/jobs").json() == []
