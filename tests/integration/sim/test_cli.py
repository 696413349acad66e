"""The ``ferry`` command as a subprocess: outputs, exit statuses and one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fleet.snapshot import parse_inventory
from tests.conftest import REPO, SMALL_FLEET

FERRY = str(Path(sys.executable).parent / "ferry")
DEMO_FLEET = REPO / "config" / "fleets" / "demo.yaml"
PLAN_KEYS = {"version", "goal", "inventory_digest", "moves", "unplaced", "before", "after", "score"}
MOVE_KEYS = {"ct", "from", "to", "method", "wave", "after", "predicted", "reason"}
SCORE_KEYS = {"peak_memory", "spread", "lower_bound_peak_memory", "moves", "bytes", "predicted_makespan_s"}


def ferry(*args: str, config: Path | None = None, timeout: float = 120, check: bool = True,
          cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [FERRY] + (["--config", str(config)] if config else []) + list(args)
    # The ferry script imports the tree the virtualenv was installed from; PYTHONPATH makes it run
    # this tree's code.
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def write_config(tmp: Path, speedup: float = 20000.0, **sim: str) -> Path:
    lines = ["[ferry]", 'backend = "sim"', 'state_dir = "state"',
             "[engine]", "retry_initial_s = 0.01", "retry_max_s = 0.05",
             "[sim]", f'fleet_file = "{SMALL_FLEET}"', f"speedup = {speedup}"]
    lines += [f"{k} = {v}" for k, v in sim.items()]
    path = tmp / "ferry.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ferry: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_plan_json_follows_the_contract_and_is_byte_identical() -> None:
    args = ("plan", "evacuate", "n1", "--inventory", str(DEMO_FLEET), "--format", "json")
    first, second = ferry(*args).stdout, ferry(*args).stdout
    assert first == second
    plan = json.loads(first)
    assert set(plan) == PLAN_KEYS and plan["version"] == 1
    assert plan["goal"] == {"kind": "evacuate", "nodes": ["n1"]}
    assert plan["inventory_digest"].startswith("sha256:")
    assert plan["moves"] and all(MOVE_KEYS <= set(m) for m in plan["moves"])
    assert all(set(m["predicted"]) >= {"duration_s", "downtime_s", "bytes"} for m in plan["moves"])
    assert all(m["from"] == "n1" and m["to"] != "n1" for m in plan["moves"])
    assert SCORE_KEYS <= set(plan["score"])
    assert set(plan["before"]["n1"]) >= {"memory", "cpu", "disk"}
    assert plan["score"]["lower_bound_peak_memory"] <= plan["score"]["peak_memory"] + 1e-9


def test_inventory_json_is_a_valid_snapshot(tmp_path: Path) -> None:
    out = ferry("inventory", "--format", "json", config=write_config(tmp_path)).stdout
    inv = parse_inventory(json.loads(out))
    assert {n.name for n in inv.nodes} == {"a", "b", "c"} and len(inv.containers) == 8
    table = ferry("inventory", config=write_config(tmp_path)).stdout
    assert "Fleet: 3 nodes, 8 containers" in table


def test_malformed_snapshot_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL_FLEET.read_text().replace("memory_mb: 4096, disk_gb: 40", "memory_mb: lots, disk_gb: 40"))
    result = ferry("plan", "evacuate", "a", "--inventory", str(bad), check=False)
    assert_one_line_error(result, "containers[0].memory_mb='lots'")


def test_unknown_node_is_one_line_exit_2(tmp_path: Path) -> None:
    result = ferry("plan", "evacuate", "zz9", "--inventory", str(SMALL_FLEET), check=False)
    assert_one_line_error(result, "'zz9'")
    config = write_config(tmp_path)
    result = ferry("evacuate", "zz9", "--yes", config=config, check=False)
    assert_one_line_error(result, "'zz9'")
    assert json.loads(ferry("jobs", "--format", "json", config=config).stdout) == []  # nothing created


def test_missing_or_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(ferry("inventory", config=tmp_path / "nope.toml", check=False), "--config=", "no such")
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy]\nmax_parallel = 0\n")
    assert_one_line_error(ferry("inventory", config=bad, check=False), "policy.max_parallel=0")
    typo = tmp_path / "typo.toml"
    typo.write_text("[policy]\nmax_paralel = 3\n")
    assert_one_line_error(ferry("inventory", config=typo, check=False), "policy.max_paralel")


def test_hostile_container_name_is_refused_harmlessly(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("alive")
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(SMALL_FLEET.read_text().replace('id: "101"', f'id: "x; rm -rf {canary}"'))
    result = ferry("plan", "evacuate", "a", "--inventory", str(hostile), check=False)
    assert_one_line_error(result, "containers[0].id=")
    assert canary.read_text() == "alive"


def test_evacuate_runs_and_journals(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    summary = json.loads(ferry("evacuate", "a", "--yes", "--format", "json", config=config).stdout)
    assert summary["state"] == "succeeded", summary
    jobs = json.loads(ferry("jobs", "--format", "json", config=config).stdout)
    assert [j["state"] for j in jobs] == ["succeeded"]
    detail = json.loads(ferry("job", "show", str(jobs[0]["id"]), "--format", "json", config=config).stdout)
    assert detail["journal"] and {"at", "host", "what", "status", "duration_ms", "step"} <= set(detail["journal"][0])
    inv = parse_inventory(json.loads(ferry("inventory", "--format", "json", config=config).stdout))
    assert not inv.on_node("a") or all(c.id in {"x"} for c in inv.on_node("a"))
    again = ferry("evacuate", "a", "--yes", config=config)
    assert "nothing to move" in again.stdout


def test_without_yes_and_without_a_terminal_nothing_runs(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = ferry("evacuate", "a", config=config, check=False)
    assert_one_line_error(result, "--yes")
    assert json.loads(ferry("jobs", "--format", "json", config=config).stdout) == []


@pytest.mark.parametrize("command", [("job", "show", "42"), ("job", "cancel", "42")])
def test_unknown_job_is_one_line_exit_2(tmp_path: Path, command: tuple[str, ...]) -> None:
    assert_one_line_error(ferry(*command, config=write_config(tmp_path), check=False), "job=42")


def test_a_saved_plan_runs_as_is_or_is_refused_when_the_fleet_drifted(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    plan_file = tmp_path / "plan.json"
    ferry("plan", "evacuate", "a", "--out", str(plan_file), "--format", "json", config=config)
    stale = tmp_path / "stale.json"
    plan = json.loads(plan_file.read_text())
    moved = plan["moves"][0]["ct"]
    stale.write_text(json.dumps({**plan, "moves": [{**plan["moves"][0], "from": "b"}]}))
    result = ferry("run", str(stale), "--yes", config=config, check=False)
    assert_one_line_error(result, "fleet changed", f"container {moved} is now on a")
    summary = json.loads(ferry("run", str(plan_file), "--yes", "--format", "json", config=config).stdout)
    assert summary["state"] == "succeeded" and summary["counts"] == {"succeeded": len(plan["moves"])}
    result = ferry("run", str(plan_file), "--yes", config=config, check=False)  # already done: drifted
    assert_one_line_error(result, "fleet changed")


def test_offline_planning_writes_nothing(tmp_path: Path) -> None:
    ferry("plan", "evacuate", "a", "--inventory", str(SMALL_FLEET), "--format", "json", cwd=tmp_path)
    ferry("plan", "rebalance", "--inventory", str(SMALL_FLEET), "--format", "json", cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []


def _follow(proc: subprocess.Popen[str], seen: list[str], needle: str, found: threading.Event) -> None:
    """Collect ``proc``'s output (ANSI codes removed) into ``seen``; set ``found`` at ``needle``."""
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line))
        if needle in seen[-1]:
            found.set()


def test_job_show_watch_follows_a_running_job_to_its_end(tmp_path: Path) -> None:
    """--watch starts on a stored job that has not run yet, shows it waiting, and follows it
    through its run to the end. The job runs only once the watcher has shown it pending, so the
    order is fixed by what the watcher printed, never by how fast either process is."""
    from planners import plan_evacuate
    from service.config import load_config
    from service.jobs import create_job
    from service.runtime import Runtime

    config = write_config(tmp_path)
    rt = Runtime(load_config(config))
    job_id = create_job(rt.sessions, plan_evacuate(rt.backend.discover(), ["a"], rt.policy()), approved=False)
    watcher = subprocess.Popen([FERRY, "--config", str(config), "job", "show", str(job_id), "--watch"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env={**os.environ, "FORCE_COLOR": "1"})  # live frames into the pipe
    seen: list[str] = []
    waiting = threading.Event()
    reader = threading.Thread(target=_follow, args=(watcher, seen, f"job {job_id} evacuate a: pending", waiting))
    reader.start()
    try:
        assert waiting.wait(timeout=120), "".join(seen)
        ferry("job", "resume", str(job_id), config=config)
        assert watcher.wait(timeout=120) == 0
    finally:
        watcher.kill()
        reader.join(timeout=10)
    assert json.loads(ferry("job", "show", str(job_id), "--format", "json", config=config).stdout)["state"] == \
        "succeeded"
    shown = "".join(seen)
    assert f"job {job_id} evacuate a: succeeded" in shown and "5 succeeded" in shown


def test_cp_sat_solver_gives_a_valid_plan_no_worse_than_greedy() -> None:
    from fleet.plan import Plan
    from fleet.policy import Policy
    from fleet.snapshot import load_inventory
    from planners import check_plan

    args = ("plan", "rebalance", "--inventory", str(SMALL_FLEET), "--format", "json", "--aggressiveness", "5")
    greedy = Plan.model_validate(json.loads(ferry(*args).stdout))
    exact = Plan.model_validate(json.loads(ferry(*args, "--solver", "cp-sat", "--time-limit", "5").stdout))
    assert check_plan(load_inventory(SMALL_FLEET), exact, Policy()) == []
    assert exact.score.peak_memory <= greedy.score.peak_memory + 1e-9
    bad = ferry(*args, "--solver", "magic", check=False)
    assert bad.returncode == 2 and "magic" in bad.stderr
