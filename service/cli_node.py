"""``ferry node …``: a node's lifecycle from the command line (service.operations.nodes).

    ferry node list                      every node, its state and the job it follows
    ferry node cordon|uncordon N         it receives nothing | it receives again (again: a no-op)
    ferry node drain N [--window] [--yes] cordon N and move its containers away, now or in windows
    ferry node restore N [--yes]         bring back the containers that left N (checked, never forced)
    ferry maintenance plan --nodes …     the calendar of a rolling maintenance (service.campaigns)
    ferry maintenance run --nodes … --yes  plan it and run it here (service.campaign_run)

Registered on ``service.cli.app`` when service.cli loads; the jobs run in this process as
``ferry drain`` does, with the same exit codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from fleet.errors import InputError
from service.cli import (
    Format,
    FormatOpt,
    WindowOpt,
    YesOpt,
    app,
    console,
    described,
    emit_json,
    execute,
    request,
    review,
    runtime,
)
from service.windows import parse_duration

if TYPE_CHECKING:
    from service.nodes import NodeEvent
    from service.operations.requests import MaintenancePlanRequest

node_app = typer.Typer(no_args_is_help=True, help="A node's lifecycle: cordon, drain, maintenance, restore.")
app.add_typer(node_app, name="node")


def node_event() -> type[NodeEvent]:
    """The node lifecycle's events (service.nodes loads the job store: imported when a verb runs)."""
    from service.nodes import NodeEvent

    return NodeEvent


NodeArg = Annotated[str, typer.Argument(help="the node's name, as in 'ferry inventory'")]


@node_app.command("list")
def node_list(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Every node with its state (active, cordoned, draining, maintenance, restoring)."""
    from service import render
    from service.operations import nodes as node_ops

    rows = node_ops.list_nodes(runtime(ctx))
    emit_json(rows) if fmt is Format.json else render.render_node_states(console, rows)


def _change(ctx: typer.Context, node: str, event: NodeEvent, fmt: Format) -> None:
    from service.operations import nodes as node_ops

    changed = node_ops.change(runtime(ctx), node, event)
    if fmt is Format.json:
        emit_json(changed)
    elif changed["from"] == changed["state"]:
        console.print(f"node {node}: already {changed['state']}; nothing changed", markup=False, highlight=False)
    else:
        console.print(f"node {node}: {changed['from']} -> {changed['state']}", markup=False, highlight=False)


@node_app.command("cordon")
def node_cordon(ctx: typer.Context, node: NodeArg, fmt: FormatOpt = Format.table) -> None:
    """The node receives nothing from any plan; its containers stay."""
    _change(ctx, node, node_event().CORDON, fmt)


@node_app.command("uncordon")
def node_uncordon(ctx: typer.Context, node: NodeArg, fmt: FormatOpt = Format.table) -> None:
    """The node receives containers again (nobody is brought back: see 'ferry node restore')."""
    _change(ctx, node, node_event().UNCORDON, fmt)


@node_app.command("drain")
def node_drain(ctx: typer.Context, node: NodeArg, yes: YesOpt = False, window: WindowOpt = False,
               fmt: FormatOpt = Format.table) -> None:
    """Cordon the node and move its containers away (with --window: moves start only when they
    fit in a maintenance window); it is in maintenance once the drain succeeded."""
    from service.operations import nodes as node_ops

    asked = request(node_ops.NodeDrainRequest, approve=True, window=window)
    submitted = node_ops.drain_node(runtime(ctx), node, asked, review(fmt, yes))
    if submitted.job_id is None:
        console.print(f"nothing to move; node {node} is in maintenance") if fmt is Format.table \
            else emit_json({"job": None, "moves": 0})
        return
    execute(ctx, submitted.job_id, len(submitted.planned.plan.moves), fmt, window)


@node_app.command("restore")
def node_restore(ctx: typer.Context, node: NodeArg, yes: YesOpt = False, window: WindowOpt = False,
                 fmt: FormatOpt = Format.table) -> None:
    """Bring back the containers that left the node, from where its drain put them; one moved or
    changed since stays where it is and is listed."""
    from service.operations import nodes as node_ops

    asked = request(node_ops.NodeRestoreRequest, approve=True, window=window)
    restored = node_ops.restore_node(runtime(ctx), node, asked, review(fmt, yes))
    if fmt is Format.table:
        for stays in restored.stay:
            console.print(f"stays: {stays['ct']}: {stays['reason']}", markup=False, highlight=False)
    if restored.job_id is None:
        console.print(f"nothing to bring back; node {node} is active") if fmt is Format.table \
            else emit_json(restored.to_dict())
        return
    execute(ctx, restored.job_id, len(restored.plan.moves), fmt, window)


# -- rolling maintenance ---------------------------------------------------------------------------
maintenance_app = typer.Typer(no_args_is_help=True, help="Rolling maintenance campaigns over several nodes.")
app.add_typer(maintenance_app, name="maintenance")


NodesOpt = Annotated[str, typer.Option(metavar="NODE,...", help="comma-separated nodes, in the order to maintain them")]
WindowsOpt = Annotated[str | None, typer.Option(
    metavar="WINDOWS",
    help="';'-separated windows, e.g. 'sat 01:00 for 2h; sun 01:00 for 2h' (default: [schedule] windows)")]
MaxOutOpt = Annotated[int, typer.Option("--max-out", metavar="NODES", help=described("max_out"))]
MaintenanceOpt = Annotated[str, typer.Option(metavar="DURATION", help=described("maintenance"))]
StartOpt = Annotated[str | None, typer.Option(metavar="INSTANT", help=described("start"))]
PlanRequestT = TypeVar("PlanRequestT", bound="MaintenancePlanRequest")


def plan_request(model: type[PlanRequestT], nodes: str, windows: str | None, **options: Any) -> PlanRequestT:
    """The request from the command line's comma-separated nodes and ';'-separated windows."""
    return request(model, nodes=[n.strip() for n in nodes.split(",") if n.strip()],
                   windows=[w.strip() for w in windows.split(";") if w.strip()] if windows else None, **options)


@maintenance_app.command("plan")
def maintenance_plan(ctx: typer.Context, nodes: NodesOpt, windows: WindowsOpt = None, max_out: MaxOutOpt = 1,
                     maintenance: MaintenanceOpt = "1h", start: StartOpt = None, fmt: FormatOpt = Format.table) -> None:
    """The calendar: which window each node drains in, its moves fitted into windows, its return."""
    from service import render
    from service.campaigns import plan_maintenance
    from service.operations.requests import MaintenancePlanRequest

    asked = plan_request(MaintenancePlanRequest, nodes, windows, max_out=max_out, maintenance=maintenance,
                         start=start)
    calendar = plan_maintenance(runtime(ctx), asked)
    emit_json(calendar.to_dict()) if fmt is Format.json else render.render_calendar(console, calendar.to_dict())


@maintenance_app.command("run")
def maintenance_run(ctx: typer.Context, nodes: NodesOpt, windows: WindowsOpt = None, max_out: MaxOutOpt = 1,
                    maintenance: MaintenanceOpt = "1h", yes: YesOpt = False, fmt: FormatOpt = Format.table) -> None:
    """Plan the calendar and run it in this process: each group drained in windows, its
    maintenance time, its containers brought home; then the next group."""
    from service import render
    from service.campaign_run import run_campaign
    from service.campaigns import campaign_windows, plan_maintenance
    from service.operations.requests import MaintenancePlanRequest

    rt = runtime(ctx)
    asked = plan_request(MaintenancePlanRequest, nodes, windows, max_out=max_out, maintenance=maintenance)
    calendar = plan_maintenance(rt, asked)
    if fmt is Format.table:
        render.render_calendar(console, calendar.to_dict())
    if not yes:
        raise InputError("--yes", False, "not given: pass --yes to run the campaign")
    run = run_campaign(rt, calendar, campaign_windows(rt, asked), parse_duration(maintenance, "maintenance", maintenance) * 60.0)
    emit_json(run.to_dict()) if fmt is Format.json else console.print_json(data=run.to_dict())


from service import cli_campaign  # noqa: E402, F401 - ferry maintenance create|list|show|…
