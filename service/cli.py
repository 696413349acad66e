"""The ``ferry`` command line (Typer + Rich). Tables for people, ``--format json`` for scripts.

Every user mistake ends as one line on stderr, ``ferry: error: KEY=VALUE: what is wrong``, and
exit status 2; nothing is changed when that happens. A command that runs a job exits with the
job's outcome (service.exits.ExitCode) and one line on stderr saying what to do next; an unexpected error is
one line naming the file that holds its traceback, never a traceback on the terminal.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

from adapters.base import BackendError
from fleet.errors import InputError
from fleet.model import Inventory
from fleet.plan import Plan
from fleet.snapshot import dump_inventory, load_inventory, read_document, validate_model
from service import operations as ops
from service import render
from service.cli_user import user_app
from service.config import load_config
from service.exits import EXIT_HELP, ExitCode, exit_for_jobs, first_line, save_trace
from service.lifecycle import JOB_FINAL
from service.logs import LogFormat, configure_logging
from service.operations.requests import DEFAULT_JOB_LIMIT, DEFAULT_TIME_LIMIT_S, Solver
from service.runtime import Runtime
from service.users import cli_actor

app = typer.Typer(no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
                  help="ferry plans and runs container migrations across Proxmox VE and OpenVZ nodes.",
                  epilog=EXIT_HELP)
plan_app = typer.Typer(no_args_is_help=True, help="Compute a plan (nothing moves).")
jobs_app = typer.Typer(help="List jobs, or resume unfinished ones.", invoke_without_command=True)
job_app = typer.Typer(no_args_is_help=True, help="Inspect or control one job.")
app.add_typer(plan_app, name="plan")
app.add_typer(jobs_app, name="jobs")
app.add_typer(job_app, name="job")
app.add_typer(user_app, name="user")

console = Console()
err_console = Console(stderr=True)
#: The state directory of the loaded config, once known (for an internal error's trace file).
_STATE_DIR: dict[str, Path] = {}


class Format(StrEnum):
    table = "table"
    json = "json"


class PlaceFormat(StrEnum):
    table = "table"
    json = "json"
    name = "name"


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table for people, json for scripts")]
InventoryOpt = Annotated[Path | None, typer.Option("--inventory", "-i", help="plan offline from this snapshot")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="also save the plan to this file")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="execute without asking")]


def described(model: type[BaseModel], field: str) -> str | None:
    """An option's help is its request field's description: written once, for both surfaces."""
    return model.model_fields[field].description


WindowOpt = Annotated[bool, typer.Option("--window", help=described(ops.JobOptions, "window"))]
SolverOpt = Annotated[str, typer.Option(help=described(ops.NodesPlanRequest, "solver"))]
TimeLimitOpt = Annotated[float, typer.Option("--time-limit", help=described(ops.NodesPlanRequest, "time_limit"))]


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
        Path | None, typer.Option("--config", "-c", help="config file (else $FERRY_CONFIG, else "
                                  "/etc/ferry/ferry.toml)")] = None,
        show_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                   help="print ferry's version and exit")] = False) -> None:
    ctx.obj = {"config_path": config}


def runtime(ctx: typer.Context) -> Runtime:
    root = ctx.find_root()
    if "runtime" not in root.obj:
        config = load_config(root.obj.get("config_path"))
        if config.path is not None or config.ferry.state_dir is not None:
            _STATE_DIR["path"] = config.state_dir  # where an internal error's trace is saved
        root.obj["runtime"] = Runtime(config)
        if config.ferry.backend == "sim":
            render.mark_fleet(render.SIMULATED)
    return root.obj["runtime"]


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def snapshot_of(path: Path | None) -> Inventory | None:
    return load_inventory(path) if path else None


RequestT = TypeVar("RequestT", bound=BaseModel)


def request(model: type[RequestT], **options: Any) -> RequestT:
    """The operation's request from the command's options, refused in the API's words."""
    return validate_model(model, {k: v for k, v in options.items() if v is not None})


# -- inventory and plans -------------------------------------------------------------------------
@app.command()
def inventory(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Show the fleet (or write a snapshot with --format json)."""
    inv = ops.current_inventory(runtime(ctx))
    if fmt is Format.json:
        sys.stdout.write(dump_inventory(inv))
    else:
        render.render_inventory(console, inv)


def show_plan(planned: ops.Planned, fmt: Format, out: Path | None) -> None:
    plan, inv = planned.plan, planned.inventory
    if out:
        out.write_text(plan.to_json(), encoding="utf-8")
    if fmt is Format.json:
        sys.stdout.write(plan.to_json())
    else:
        render.render_plan(console, plan, inv)
        if out:
            console.print(f"saved to {out}; run it with: ferry run {out}", markup=False, highlight=False)


def show_nodes_plan(ctx: typer.Context, goal: ops.NodeGoal, nodes: list[str], snapshot: Path | None,
                    out: Path | None, fmt: Format, solver: str, time_limit: float) -> None:
    """``ferry plan GOAL NODE…``: plan and show (evacuate and drain share their options)."""
    asked = request(ops.NodesPlanRequest, nodes=nodes, solver=solver, time_limit=time_limit)
    show_plan(ops.plan_nodes(runtime(ctx), goal, asked, snapshot_of(snapshot)), fmt, out)


def _node_plan_command(goal: ops.NodeGoal, doc: str) -> None:
    """Register ``ferry plan GOAL NODE…`` (evacuate and drain share their options)."""
    def command(ctx: typer.Context, nodes: list[str], snapshot: InventoryOpt = None, out: OutOpt = None,
                fmt: FormatOpt = Format.table, solver: SolverOpt = Solver.greedy.value,
                time_limit: TimeLimitOpt = DEFAULT_TIME_LIMIT_S) -> None:
        show_nodes_plan(ctx, goal, nodes, snapshot, out, fmt, solver, time_limit)

    command.__doc__ = doc
    plan_app.command(goal)(command)


_node_plan_command("drain", "Like evacuate, for maintenance: the moves are later fitted into windows.")


@plan_app.command("rebalance")
def plan_rebalance_cmd(
    ctx: typer.Context, snapshot: InventoryOpt = None, out: OutOpt = None, fmt: FormatOpt = Format.table,
    aggressiveness: Annotated[int | None, typer.Option(help=described(ops.RebalanceRequest, "aggressiveness"))] = None,
    max_moves: Annotated[int | None, typer.Option()] = None,
    min_gain: Annotated[float | None, typer.Option()] = None,
    solver: SolverOpt = Solver.greedy.value, time_limit: TimeLimitOpt = DEFAULT_TIME_LIMIT_S,
) -> None:
    """Spread load with few, cheap moves."""
    asked = request(ops.RebalanceRequest, aggressiveness=aggressiveness, max_moves=max_moves, min_gain=min_gain,
                    solver=solver, time_limit=time_limit)
    show_plan(ops.plan_rebalancing(runtime(ctx), asked, snapshot_of(snapshot)), fmt, out)


@plan_app.command("place")
def plan_place_cmd(
    ctx: typer.Context, cpus: Annotated[float, typer.Option()],
    memory: Annotated[int, typer.Option(help=described(ops.PlaceRequest, "memory"))],
    disk: Annotated[float, typer.Option(help=described(ops.PlaceRequest, "disk"))],
    storage: str | None = None, snapshot: InventoryOpt = None,
    fmt: Annotated[PlaceFormat, typer.Option("--format", "-f", help=(
        "table for people, json for scripts, name: the best node's name alone (for Terraform, "
        "Ansible; exit 3 when no node can take it)"))] = PlaceFormat.table,
) -> None:
    """The best node for a new container."""
    asked = request(ops.PlaceRequest, cpus=cpus, memory=memory, disk=disk, storage=storage)
    result = ops.place_container(runtime(ctx), asked, snapshot_of(snapshot))
    if fmt is PlaceFormat.json:
        emit_json(result)
    elif fmt is PlaceFormat.name and result["best"]:
        console.print(result["best"], markup=False, highlight=False)
    elif fmt is PlaceFormat.table:
        render.render_place(console, result)
    if not result["best"]:
        first = result["rejected"][0]["reason"] if result["rejected"] else "the fleet has no node"
        err_console.print(f"ferry: no node can take it ({first}; --format json lists every node's reason)",
                          markup=False, highlight=False)
        raise typer.Exit(ExitCode.JOB_FAILED)


# -- execution -------------------------------------------------------------------------------------
def review(fmt: Format, yes: bool, show: Callable[[Console, Plan, Inventory], None] | None = None) -> ops.Review:
    """Show the plan to a person (with ``show``, else the plan table) and ask before anything is
    stored (unless --yes)."""
    def check(plan: Plan, inv: Inventory) -> None:
        if fmt is Format.table:
            (show or render.render_plan)(console, plan, inv)
        if not plan.moves:
            return
        if plan.unplaced and fmt is Format.table:
            console.print(f"[yellow]{len(plan.unplaced)} containers have no destination and stay where they are[/]")
        if not yes:
            if not sys.stdin.isatty():
                raise InputError("--yes", False, "not given and no terminal to ask: pass --yes to execute")
            typer.confirm(f"Execute {len(plan.moves)} moves?", abort=True)

    return check


def execute(ctx: typer.Context, job_id: int, moves: int, fmt: Format, window: bool) -> None:
    """Run the new job in this process and say how it went."""
    from service.progress import JobProgress

    rt = runtime(ctx)
    if fmt is Format.json:
        summary = ops.run_here(rt, job_id)
        emit_json(summary.to_dict())
        exit_for_jobs(err_console, [summary])
        return
    console.print(f"job {job_id} started; watch it with 'ferry job show {job_id}'")
    if window:  # the worker's window-gated run: no per-move progress
        summary = ops.run_here(rt, job_id)
    else:
        with JobProgress(console, moves) as progress:
            summary = ops.run_here(rt, job_id, progress=progress.update)
    render.render_summary(console, summary.to_dict())
    message = ops.job_detail(rt, job_id)["message"] if window else None
    if message:  # e.g. waiting for a maintenance window: 'ferry serve' continues it then
        console.print(message, markup=False, highlight=False)
    exit_for_jobs(err_console, [summary])


def execute_submitted(ctx: typer.Context, submitted: ops.Submitted, fmt: Format, window: bool) -> None:
    """Run a job just submitted; a plan that moves nothing is an answer, not a mistake."""
    if submitted.job_id is None:
        console.print("nothing to move") if fmt is Format.table else emit_json({"job": None, "moves": 0})
        return
    execute(ctx, submitted.job_id, len(submitted.planned.plan.moves), fmt, window)


def run_nodes_job(ctx: typer.Context, goal: ops.NodeGoal, nodes: list[str], yes: bool, window: bool,
                  fmt: Format, refuse: Callable[[Inventory, list[str]], None] | None = None) -> None:
    """``ferry GOAL NODE…``: plan against the live fleet and execute now (evacuate, drain);
    ``refuse`` may stop it (raising) once the fleet is read, before the plan is shown."""
    asked = request(ops.NodesJobRequest, nodes=nodes, approve=True, window=window)
    show = review(fmt, yes)

    def checked(plan: Plan, inv: Inventory) -> None:
        if refuse is not None:
            refuse(inv, nodes)
        show(plan, inv)

    execute_submitted(ctx, ops.submit_nodes(runtime(ctx), goal, asked, checked, actor=cli_actor()), fmt, window)


def _node_job_command(goal: ops.NodeGoal, doc: str) -> None:
    """Register ``ferry GOAL NODE…`` (evacuate, drain)."""
    def command(ctx: typer.Context, nodes: list[str], yes: YesOpt = False, window: WindowOpt = False,
                fmt: FormatOpt = Format.table) -> None:
        run_nodes_job(ctx, goal, nodes, yes, window, fmt)

    command.__doc__ = doc
    app.command(goal)(command)


_node_job_command("drain", "Plan and execute the drain of NODES for maintenance (with --window: inside windows).")


@app.command("run")
def run_plan(ctx: typer.Context, plan_file: Path, yes: YesOpt = False, window: WindowOpt = False,
             fmt: FormatOpt = Format.table) -> None:
    """Execute a saved plan exactly as written, after re-validating it against the live fleet."""
    plan = validate_model(Plan, read_document(plan_file), source=str(plan_file))
    job_id = ops.submit_plan(runtime(ctx), plan, ops.JobOptions(approve=True, window=window), review(fmt, yes),
                             actor=cli_actor())
    execute(ctx, job_id, len(plan.moves), fmt, window)


# -- jobs ------------------------------------------------------------------------------------------
@jobs_app.callback()
def jobs_list(ctx: typer.Context, fmt: FormatOpt = Format.table, limit: Annotated[
        int, typer.Option(help="newest jobs to list")] = DEFAULT_JOB_LIMIT) -> None:
    if ctx.invoked_subcommand is not None:
        return
    jobs = ops.list_jobs(runtime(ctx), request(ops.JobListRequest, limit=limit).limit)
    emit_json(jobs) if fmt is Format.json else render.render_jobs(console, jobs)


@jobs_app.command("resume")
def jobs_resume(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Continue every unfinished job from what the store and the world say."""
    summaries = ops.resume_unfinished(runtime(ctx))
    results = [summary.to_dict() for summary in summaries]
    if fmt is Format.json:
        emit_json(results)
    elif not results:
        console.print("no unfinished jobs")
    for summary in results if fmt is Format.table else []:
        render.render_summary(console, summary)
    exit_for_jobs(err_console, summaries)


@app.command()
def cleanup(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Finish cleanups left for later: retire kept sources whose retention ended, stop forwarders."""
    lines = ops.run_cleanups(runtime(ctx))
    if fmt is Format.json:
        emit_json(lines)
    else:
        console.print("\n".join(lines) if lines else "no cleanup pending", markup=False, highlight=False)


@job_app.command("show")
def job_show(ctx: typer.Context, job_id: int, fmt: FormatOpt = Format.table, watch: Annotated[
        bool, typer.Option("--watch", "-w", help="refresh every second until the job ends")] = False) -> None:
    """A job's moves and state (with --format json: and its journal of every command)."""
    rt = runtime(ctx)
    detail = ops.job_detail(rt, job_id)
    if fmt is Format.json:
        emit_json(detail)
        return
    if not watch:
        render.render_job(console, detail)
        if detail["window"]:
            console.print("its moves start only inside the configured maintenance windows")
        return
    from rich.live import Live

    with Live(render.job_view(detail), console=console, refresh_per_second=2) as live:
        while detail["state"] not in JOB_FINAL:
            time.sleep(1.0)
            detail = ops.job_detail(rt, job_id)
            live.update(render.job_view(detail))


def _control(ctx: typer.Context, job_id: int, action: str) -> None:
    changed = ops.control(runtime(ctx), job_id, action, actor=cli_actor())
    console.print(f"job {job_id}: {changed['from']} -> {changed['state']}")


@job_app.command("approve")
def job_approve(ctx: typer.Context, job_id: int) -> None:
    """A pending job becomes approved: 'ferry serve' (or 'ferry jobs resume') runs it."""
    _control(ctx, job_id, "approve")


@job_app.command("cancel")
def job_cancel(ctx: typer.Context, job_id: int) -> None:
    """Stop starting moves; moves in flight roll back. Run 'ferry jobs resume' if no ferry runs it."""
    _control(ctx, job_id, "cancel")


@job_app.command("pause")
def job_pause(ctx: typer.Context, job_id: int) -> None:
    """Start no new moves; moves in flight finish."""
    _control(ctx, job_id, "pause")


@job_app.command("resume")
def job_resume(ctx: typer.Context, job_id: int, fmt: FormatOpt = Format.table) -> None:
    """Approve a paused or pending job and run it to the end in this process."""
    rt = runtime(ctx)
    ops.control(rt, job_id, "resume", actor=cli_actor())
    summary = ops.run_here(rt, job_id)
    emit_json(summary.to_dict()) if fmt is Format.json else render.render_summary(console, summary.to_dict())
    exit_for_jobs(err_console, [summary])


@app.command()
def demo(speedup: Annotated[float, typer.Option(min=1.0)] = 120.0) -> None:
    """Evacuate the hot node of the built-in simulated fleet, start to finish."""
    from service.demo import run_demo

    raise typer.Exit(run_demo(console, speedup=speedup))


# -- the long-running service ----------------------------------------------------------------------
@app.command()
def serve(ctx: typer.Context,
          host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
          log_format: Annotated[LogFormat, typer.Option(
              "--log-format", help="plain lines (journald) or one JSON object per line")] = LogFormat.plain,
          ) -> None:
    """Serve the REST API and metrics, and run approved jobs (and the nightly rebalance) until
    SIGTERM / SIGINT; then start no new move, let moves in flight finish, and exit. Logs every
    job and move transition to stderr, with UTC timestamps."""
    from service.worker import serve_until_stopped

    configure_logging(log_format)
    serve_until_stopped(runtime(ctx), host, port)


# The verbs defined in their own modules register themselves on ``app`` when imported.
from service import cli_node, cli_recovery  # noqa: E402, F401, I001


def main() -> None:
    try:
        status = app(standalone_mode=False)  # click returns typer.Exit's code in this mode
        if isinstance(status, int) and status:
            sys.exit(status)
    except InputError as exc:
        err_console.print(f"ferry: error: {exc.line()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except BackendError as exc:  # the cluster refused or could not be reached: not a user mistake
        err_console.print(f"ferry: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
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
        trace = save_trace(_STATE_DIR.get("path"))
        err_console.print(f"ferry: internal error: {type(exc).__name__}: {first_line(str(exc))} "
                          f"(trace saved to {trace})",
                          markup=False, highlight=False, soft_wrap=True)
        sys.exit(ExitCode.ERROR)
