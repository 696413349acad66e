"""``ferry plan …``: compute a plan and show it (nothing moves).

    options --request model--> service.operations (planners) --Planned--> table | JSON | plan file

The planners (and, for ``--solver cp-sat``, OR-Tools) are imported when a plan is asked for, not
when the command line is parsed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli import plan_app
from service.cli_options import (
    DEFAULT_TIME_LIMIT_S,
    Format,
    FormatOpt,
    InventoryOpt,
    NodesArg,
    OutOpt,
    PlaceFormat,
    SolverOpt,
    TimeLimitOpt,
    WideOpt,
    asks,
    console,
    described,
    emit_json,
    err_console,
    request,
    runtime,
    snapshot_of,
)
from service.exits import ExitCode
from service.operations.request_fields import Solver

if TYPE_CHECKING:
    from service import operations as ops


def show_plan(planned: ops.Planned, fmt: Format, out: Path | None, wide: bool = False) -> None:
    from service import render

    plan, inv = planned.plan, planned.inventory
    if out:
        out.write_text(plan.to_json(), encoding="utf-8")
    if fmt is Format.json:
        sys.stdout.write(plan.to_json())
    else:
        render.render_plan(console, plan, inv, wide=wide)
        if out:
            console.print(f"saved to {out}; run it with: ferry run {out}", markup=False, highlight=False)


def show_nodes_plan(ctx: typer.Context, goal: ops.NodeGoal, nodes: list[str], snapshot: Path | None,
                    out: Path | None, fmt: Format, solver: str, time_limit: float, wide: bool = False) -> None:
    """``ferry plan GOAL NODE…``: plan and show (evacuate and drain share their options)."""
    from service import operations as ops

    asked = request(asks.NodesPlanRequest, nodes=nodes, solver=solver, time_limit=time_limit)
    show_plan(ops.plan_nodes(runtime(ctx), goal, asked, snapshot_of(snapshot)), fmt, out, wide)


@plan_app.command("drain")
def plan_drain(ctx: typer.Context, nodes: NodesArg, snapshot: InventoryOpt = None, out: OutOpt = None,
               fmt: FormatOpt = Format.table, solver: SolverOpt = Solver.greedy.value,
               time_limit: TimeLimitOpt = DEFAULT_TIME_LIMIT_S, wide: WideOpt = False) -> None:
    """Like evacuate, for maintenance: the moves are later fitted into windows."""
    show_nodes_plan(ctx, "drain", nodes, snapshot, out, fmt, solver, time_limit, wide)


@plan_app.command("rebalance")
def plan_rebalance_cmd(
    ctx: typer.Context, snapshot: InventoryOpt = None, out: OutOpt = None, fmt: FormatOpt = Format.table,
    aggressiveness: Annotated[int | None, typer.Option(
        metavar="1..5", help=described("aggressiveness"))] = None,
    max_moves: Annotated[int | None, typer.Option(metavar="MOVES", help="at most this many moves")] = None,
    min_gain: Annotated[float | None, typer.Option(
        metavar="FRACTION", help="the smallest gain in peak utilisation a move must bring (0.01 = 1 point)")] = None,
    solver: SolverOpt = Solver.greedy.value, time_limit: TimeLimitOpt = DEFAULT_TIME_LIMIT_S,
    wide: WideOpt = False,
) -> None:
    """Spread load with few, cheap moves."""
    from service import operations as ops

    asked = request(asks.RebalanceRequest, aggressiveness=aggressiveness, max_moves=max_moves, min_gain=min_gain,
                    solver=solver, time_limit=time_limit)
    show_plan(ops.plan_rebalancing(runtime(ctx), asked, snapshot_of(snapshot)), fmt, out, wide)


@plan_app.command("place")
def plan_place_cmd(
    ctx: typer.Context, cpus: Annotated[float, typer.Option(metavar="CPUS", help="virtual CPUs")],
    memory: Annotated[int, typer.Option(metavar="MiB", help="configured memory, MiB")],
    disk: Annotated[float, typer.Option(metavar="GiB", help="root disk, GiB")],
    storage: Annotated[str | None, typer.Option(metavar="STORAGE", help="the storage id it must live on")] = None,
    snapshot: InventoryOpt = None,
    fmt: Annotated[PlaceFormat, typer.Option("--format", "-f", help=(
        "table for people, json for scripts, name: the best node's name alone (for Terraform, "
        "Ansible; exit 3 when no node can take it)"))] = PlaceFormat.table,
) -> None:
    """The best node for a new container."""
    from service import operations as ops
    from service import render

    asked = request(asks.PlaceRequest, cpus=cpus, memory=memory, disk=disk, storage=storage)
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
