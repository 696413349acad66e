"""Start-up time of the CLI and peak memory of the planner, each against a baseline of the same run.

- Start-up: ``ferry --help``, ``ferry jobs`` and ``ferry inventory`` (on a simulated fleet's
  config, its store and world created by a first call that is not counted) against a bare
  ``python -c pass`` (and, for scale, a one-command Typer app: the framework's floor), each run :data:`RUNS` times as a fresh process; the medians of wall time and
  of CPU time (user + system, the children's rusage) are printed with their ratio to the bare
  interpreter, and CPU time against the :data:`STARTUP_TARGET_S` goal. CPU time moves less with
  the machine's load than wall time.
- Peak memory: a fresh process builds a synthetic fleet of 20k / 50k containers (baseline: it stops
  there) or builds it and plans (evacuate one node; rebalance with ``max_moves`` 200). Printed:
  the process's maximum RSS (``ru_maxrss``) and the traced allocation peak of the planning call
  alone (tracemalloc), against the same figures of building the fleet.

Run: ``.venv/bin/python -m bench footprint`` (minutes: the traced 50k rebalance
alone took 6 minutes at load average 10); ``.venv/bin/python -m bench.footprint startup`` measures
the start-up alone (seconds).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 5
#: What a listing command or the help may cost, CPU seconds (issue 14: "start in under 0.3 s").
STARTUP_TARGET_S = 0.3
SIZES = (20_000, 50_000)


def _env() -> dict[str, str]:
    """The worktree's code first (the editable install may point at another checkout), with
    bytecode caches written (by the uncounted first call) and read, as an installed ferry has."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


#: The framework's own floor: a one-command Typer app parsing one option (Typer 0.29 coerces every
#: option through a pydantic TypeAdapter, so pydantic is imported by any command that takes one).
_TYPER_FLOOR = "import typer\napp = typer.Typer()\n@app.command()\ndef one(n: int = 0) -> None: pass\napp()"


def _sim_config(folder: Path) -> Path:
    path = folder / "ferry.toml"
    path.write_text("\n".join(["[ferry]", 'backend = "sim"', 'state_dir = "state"',
                               "[sim]", f'fleet_file = "{ROOT / "config" / "fleets" / "demo.yaml"}"']) + "\n")
    return path


def startup() -> list[tuple[str, float, float]]:
    """(what, median wall s, median CPU s) per command, the bare interpreter first."""
    folder = Path(tempfile.mkdtemp(prefix="ferry-bench-startup-"))
    config = _sim_config(folder)
    # what the installed ``ferry`` script runs, with this checkout's code
    ferry = [sys.executable, "-c", "import sys; from service.cli import main; sys.argv[0] = 'ferry'; sys.exit(main())"]
    commands = [("python -c pass", [sys.executable, "-c", "pass"]),
                ("Typer app, one option", [sys.executable, "-c", _TYPER_FLOOR, "--n", "1"]),
                ("ferry --help", [*ferry, "--help"]),
                ("ferry jobs (sim config)", [*ferry, "--config", str(config), "jobs"]),
                ("ferry inventory (sim config)", [*ferry, "--config", str(config), "inventory"])]
    for _what, argv in commands[1:]:  # creates the store and the simulated world, writes bytecode caches
        _timed(argv, folder)
    rows = []
    for what, argv in commands:
        runs = [_timed(argv, folder) for _ in range(RUNS)]
        rows.append((what, statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)))
    return rows


_MEMORY_CHILD = """
import json, resource, sys, tracemalloc
from fleet import Policy
from planners import plan_evacuate, plan_rebalance
from planners.synthetic import Shape, synthetic_fleet
containers, task = int(sys.argv[1]), sys.argv[2]
tracemalloc.start()
inv = synthetic_fleet(1, containers // 50, containers, Shape(hot_node_fill=0.95, hot_share=0.25, fill=0.4))
built = tracemalloc.get_traced_memory()[1]
tracemalloc.reset_peak()
if task == "evacuate":
    plan_evacuate(inv, [inv.nodes[0].name], Policy())
elif task == "rebalance":
    plan_rebalance(inv, Policy(max_moves=200))
traced = tracemalloc.get_traced_memory()[1] if task != "fleet" else built
print(json.dumps({"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "traced": traced / 2**20}))
"""


def memory(containers: int, task: str) -> dict[str, float]:
    """Maximum RSS (MiB) of a fresh process that builds the fleet and does ``task``, and the traced
    allocation peak (MiB) of the task alone (``fleet``: of building the fleet)."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(containers), task], env=_env(), check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_startup() -> None:
    rows = startup()
    _, base_wall, base_cpu = rows[0]
    print(f"CLI start-up, median of {RUNS} fresh processes (ratio: against python -c pass, same run; "
          f"goal: CPU under {STARTUP_TARGET_S} s)")
    print(f"  {'command':<30}{'wall s':>8}{'x':>7}{'CPU s':>8}{'x':>7}  goal")
    for what, wall, cpu in rows:
        print(f"  {what:<30}{wall:>8.3f}{wall / base_wall:>7.1f}{cpu:>8.3f}{cpu / base_cpu:>7.1f}  "
              f"{'met' if cpu < STARTUP_TARGET_S else 'missed'}")


def main(parts: tuple[str, ...] = ("startup", "memory")) -> None:
    if "startup" in parts:
        print_startup()
    if "memory" not in parts:
        return
    print("planner peak memory, one fresh process each (ratio: against building the same fleet)")
    print(f"  {'containers':>10} {'task':<10}{'max RSS MiB':>12}{'x':>7}{'traced MiB':>11}{'x':>7}")
    for size in SIZES:
        base = memory(size, "fleet")
        for task in ("fleet", "evacuate", "rebalance"):
            r = base if task == "fleet" else memory(size, task)
            print(f"  {size:>10,} {task:<10}{r['rss']:>12.0f}{r['rss'] / base['rss']:>7.2f}"
                  f"{r['traced']:>11.1f}{r['traced'] / base['traced']:>7.2f}")


if __name__ == "__main__":
    main(tuple(sys.argv[1:]) or ("startup", "memory"))
