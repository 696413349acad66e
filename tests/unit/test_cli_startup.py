"""The CLI starts without the heavy parts: ``ferry --help`` and every command's option parsing must
not pay for the web stack, the solver, data frames, the planners, the job store or pydantic's
models, and ``ferry jobs`` on a SQLite store lists it without SQLAlchemy. Checked in a fresh
interpreter (this test process has imported everything already), by what the import of the CLI's
top module, or a command, leaves in ``sys.modules``; start-up times themselves are measured by the
bench (bench/footprint.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Imported only by the commands that use them.
HEAVY = ("fastapi", "starlette", "uvicorn", "ortools", "pandas", "numpy", "sqlalchemy", "alembic",
         "apscheduler", "paramiko", "proxmoxer", "planners", "service.engine", "service.store", "service.worker")


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (this worktree first on the path)."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "80"}, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def loaded(modules: set[str], package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in modules)


def test_importing_the_cli_loads_no_heavy_package() -> None:
    modules = modules_after("import service.cli")
    assert "typer" in modules and "service.cli_jobs" in modules  # the probe saw the whole CLI
    assert [p for p in HEAVY if loaded(modules, p)] == []


def test_the_help_of_every_top_command_is_written_without_them() -> None:
    modules = modules_after("import contextlib, io\nfrom service import cli\n"
                            "with contextlib.redirect_stdout(io.StringIO()):\n"
                            "    cli.command_tree()(['--help'], prog_name='ferry', standalone_mode=False)")
    assert [p for p in HEAVY if loaded(modules, p)] == []


def test_the_help_needs_no_pydantic_model() -> None:
    modules = modules_after("import contextlib, io\nfrom service import cli\n"
                            "with contextlib.redirect_stdout(io.StringIO()):\n"
                            "    cli.command_tree()(['plan', 'evacuate', '--help'], prog_name='ferry', standalone_mode=False)")
    assert loaded(modules, "typer") and not loaded(modules, "service.operations.requests")
    assert not loaded(modules, "fleet.model") and not loaded(modules, "service.render")


def jobs_command(config: Path, verb: str = "jobs") -> str:
    return ("import contextlib, io\nfrom service import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    cli.command_tree()(['--config', {str(config)!r}, {verb!r}], prog_name='ferry', standalone_mode=False)")


def test_ferry_jobs_and_inventory_read_a_sqlite_store_without_sqlalchemy(tmp_path: Path) -> None:
    from service.store import open_database

    config = tmp_path / "ferry.toml"
    fleet = ROOT / "tests" / "doubles" / "fleets" / "small.yaml"
    config.write_text(f'[ferry]\nbackend = "sim"\nstate_dir = "state"\n[sim]\nfleet_file = "{fleet}"\n')
    first = modules_after(jobs_command(config))  # no store yet: the ORM creates it
    assert [p for p in ("sqlalchemy", "alembic", "service.store") if loaded(first, p)] == \
        ["sqlalchemy", "alembic", "service.store"]
    open_database(f"sqlite:///{tmp_path / 'state' / 'ferry.db'}")  # there, at the newest schema
    modules_after(jobs_command(config, "inventory"))  # the first look at the fleet remembers it
    modules = modules_after(jobs_command(config))
    assert "service.operations.listing" in modules and "service.config" in modules
    assert [p for p in HEAVY if loaded(modules, p)] == []
    modules = modules_after(jobs_command(config, "inventory"))  # its first call remembered the fleet
    assert loaded(modules, "adapters.sim") and [p for p in HEAVY if loaded(modules, p)] == []


def test_a_plan_brings_the_planners_the_cli_did_not() -> None:
    """The check above can fail: the same probe sees the planners once a command needs them."""
    modules = modules_after("import service.cli\nfrom service.operations import planning\n"
                            "planning.node_planner('evacuate')")
    assert loaded(modules, "planners") and not loaded(modules, "fastapi")
