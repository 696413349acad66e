"""The ``ferry`` command line (Typer + Rich). Tables for people, ``--format json`` for scripts.

    main() --> app (this module: the root options, inventory, demo, serve)
                 |-- plan …            service.cli_plan
                 |-- drain, run        service.cli_run   (review, execute: shared by every job verb)
                 |-- jobs, job …       service.cli_jobs
                 |-- user …            service.cli_user
                 `-- node, maintenance, evacuate, recovery: their own modules, registered below
    every module: service.cli_options (formats, options, runtime), light enough for ``--help``

Every user mistake ends as one line on stderr, ``ferry: error: KEY=VALUE: what is wrong``, and
exit status 2; nothing is changed when that happens. A command that runs a job exits with the
job's outcome (service.exits.ExitCode) and one line on stderr saying what to do next; an unexpected error is
one line naming the file that holds its traceback, never a traceback on the terminal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fleet.errors import InputError
from service.cli_options import STATE_DIR, Format, FormatOpt, console, err_console, runtime
from service.exits import EXIT_HELP, ExitCode, first_line, save_trace
from service.logs import LogFormat

app = typer.Typer(no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
                  help="ferry plans and runs container migrations across Proxmox VE and OpenVZ nodes.",
                  epilog=EXIT_HELP)
plan_app = typer.Typer(no_args_is_help=True, help="Compute a plan (nothing moves).")
jobs_app = typer.Typer(help="List jobs, or resume unfinished ones.", invoke_without_command=True)
job_app = typer.Typer(no_args_is_help=True, help="Inspect or control one job.")
app.add_typer(plan_app, name="plan")
app.add_typer(jobs_app, name="jobs")
app.add_typer(job_app, name="job")


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"ferry {version('ferry')}", markup=False, highlight=False)
        except PackageNotFoundError:  # run from a source tree that was never installed
            console.print("ferry (not installed)", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(ctx: typer.Context, config: Annotated[
        Path | None, typer.Option("--config", "-c", metavar="FILE", help="config file (else $FERRY_CONFIG, else "
                                  "/etc/ferry/ferry.toml)")] = None,
        show_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                   help="print ferry's version and exit")] = False) -> None:
    ctx.obj = {"config_path": config}


@app.command()
def inventory(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Show the fleet (or write a snapshot with --format json)."""
    from service import operations as ops
    from service.operations.listing import inventory_from_sqlite

    rt = runtime(ctx)
    inv = inventory_from_sqlite(rt) or ops.current_inventory(rt)  # the ORM: node states, a new store
    if fmt is Format.json:
        from fleet.snapshot import dump_inventory

        sys.stdout.write(dump_inventory(inv))
    else:
        from service import render

        render.render_inventory(console, inv)


@app.command()
def demo(speedup: Annotated[float, typer.Option(min=1.0, metavar="TIMES",
                                                help="simulated seconds per wall-clock second")] = 120.0) -> None:
    """Evacuate the hot node of the built-in simulated fleet, start to finish."""
    from service.demo import run_demo

    raise typer.Exit(run_demo(console, speedup=speedup))


@app.command()
def serve(ctx: typer.Context,
          host: Annotated[str, typer.Option(metavar="ADDRESS", help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(min=1, max=65535, metavar="PORT", help="TCP port")] = 8080,
          log_format: Annotated[LogFormat, typer.Option(
              "--log-format", help="plain lines (journald) or one JSON object per line")] = LogFormat.plain,
          ) -> None:
    """Serve the REST API and metrics, and run approved jobs (and the nightly rebalance) until
    SIGTERM / SIGINT; then start no new move, let moves in flight finish, and exit. Logs every
    job and move transition to stderr, with UTC timestamps."""
    from service.logs import configure_logging
    from service.worker import serve_until_stopped

    configure_logging(log_format)
    serve_until_stopped(runtime(ctx), host, port)


# The commands of the other modules register themselves on ``app`` when imported; the names below
# are what those modules take from here.
from service.cli_options import (  # noqa: E402, F401, I001
    DEFAULT_TIME_LIMIT_S, InventoryOpt, JobArg, NodesArg, OutOpt, PlaceFormat, SolverOpt, TimeLimitOpt, WideOpt,
    WindowOpt, YesOpt, described, emit_json, request, snapshot_of,
)
from service.cli_run import execute, execute_submitted, review, run_nodes_job  # noqa: E402, F401, I001
from service.cli_plan import show_nodes_plan, show_plan  # noqa: E402, F401, I001
from service import cli_jobs, cli_user  # noqa: E402, F401, I001
from service import cli_node, cli_recovery  # noqa: E402, F401, I001


def _is_backend_error(exc: Exception) -> bool:
    """Whether ``exc`` is the backend's refusal; adapters.base is imported only by commands that
    reach a backend, so when it was never imported the error cannot be one."""
    base = sys.modules.get("adapters.base")
    return base is not None and isinstance(exc, base.BackendError)


def _no_type(ctx: typer.Context) -> None:
    return None


def command_tree() -> typer.main.TyperGroup:
    """The click commands of ``app``, with no Python type left in their help: a flag or an
    argument shows no value type (Typer prints ``<bool>``, ``<int>``, ``<list[str]>``: an argument's
    name is its metavar already); every other option names its value with a ``metavar`` where it is
    declared, or lists its choices (tests/unit/test_cli_help.py checks every command)."""
    command = typer.main.get_command(app)
    pending = [command]
    while pending:
        current = pending.pop()
        helper = current.get_help_option(typer.Context(current))
        for param in [*current.params, *([helper] if helper else [])]:
            if param.param_type_name == "argument" or getattr(param, "is_flag", False):
                param.display_type_rich = _no_type  # type: ignore[method-assign]
        pending.extend(getattr(current, "commands", {}).values())
    return command


def main() -> None:
    try:
        status = command_tree()(standalone_mode=False)  # click returns typer.Exit's code in this mode
        if isinstance(status, int) and status:
            sys.exit(status)
    except InputError as exc:
        err_console.print(f"ferry: error: {exc.line()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err_console.print("ferry: aborted, nothing changed")
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: click's own message (and help), exit 2
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err_console.print(f"ferry: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", ExitCode.USER_MISTAKE))
    except Exception as exc:  # a defect or an unforeseen condition: one line, the trace in a file
        if _is_backend_error(exc):  # the cluster refused or could not be reached: not a user mistake
            err_console.print(f"ferry: error: {exc}", markup=False, highlight=False, soft_wrap=True)
            sys.exit(ExitCode.ERROR)
        trace = save_trace(STATE_DIR.get("path"))
        err_console.print(f"ferry: internal error: {type(exc).__name__}: {first_line(str(exc))} "
                          f"(trace saved to {trace})",
                          markup=False, highlight=False, soft_wrap=True)
        sys.exit(ExitCode.ERROR)
