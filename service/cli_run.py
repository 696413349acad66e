"""Commands that execute: ``ferry drain``, ``ferry run`` (and the helpers evacuate and the node
verbs share): review the plan with a person, store the job, run it here with live progress.

    plan --review (table, confirm)--> job stored --run_here (JobProgress)--> summary --> exit code
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from service.cli import app
from service.cli_options import (
    Format,
    FormatOpt,
    NodesArg,
    WindowOpt,
    YesOpt,
    asks,
    console,
    emit_json,
    err_console,
    request,
    runtime,
)

if TYPE_CHECKING:
    from fleet.model import Inventory
    from fleet.plan import Plan
    from service import operations as ops


def review(fmt: Format, yes: bool, show: Callable[[Console, Plan, Inventory], None] | None = None) -> ops.Review:
    """Show the plan to a person (with ``show``, else the plan table) and ask before anything is
    stored (unless --yes)."""
    def check(plan: Plan, inv: Inventory) -> None:
        from fleet.errors import InputError
        from service import render

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
    from service import operations as ops
    from service import render
    from service.exits import exit_for_jobs
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
    from service import operations as ops
    from service.users import cli_actor

    asked = request(asks.NodesJobRequest, nodes=nodes, approve=True, window=window)
    show = review(fmt, yes)

    def checked(plan: Plan, inv: Inventory) -> None:
        if refuse is not None:
            refuse(inv, nodes)
        show(plan, inv)

    execute_submitted(ctx, ops.submit_nodes(runtime(ctx), goal, asked, checked, actor=cli_actor()), fmt, window)


@app.command("drain")
def drain(ctx: typer.Context, nodes: NodesArg, yes: YesOpt = False, window: WindowOpt = False,
          fmt: FormatOpt = Format.table) -> None:
    """Plan and execute the drain of NODES for maintenance (with --window: inside windows)."""
    run_nodes_job(ctx, "drain", nodes, yes, window, fmt)


@app.command("run")
def run_plan(ctx: typer.Context,
             plan_file: Annotated[Path, typer.Argument(metavar="PLAN_FILE", help="a plan saved by 'ferry plan … --out'")],
             yes: YesOpt = False, window: WindowOpt = False, fmt: FormatOpt = Format.table) -> None:
    """Execute a saved plan exactly as written, after re-validating it against the live fleet."""
    from fleet.plan import Plan
    from fleet.snapshot import read_document, validate_model
    from service import operations as ops
    from service.users import cli_actor

    plan = validate_model(Plan, read_document(plan_file), source=str(plan_file))
    job_id = ops.submit_plan(runtime(ctx), plan, asks.JobOptions(approve=True, window=window), review(fmt, yes),
                             actor=cli_actor())
    execute(ctx, job_id, len(plan.moves), fmt, window)
