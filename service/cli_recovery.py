"""``ferry evacuate`` (and ``ferry plan evacuate``) with ``--from-backups``, and ``ferry recovery``.

A live node is evacuated as always. A dead one (offline, unreachable) cannot be copied from: the
plain command stops with one line that offers ``--from-backups`` (exit 2, nothing stored), and
``--from-backups`` plans the restores (service/recovery.py), shows each container's data age, and
runs them as one job once the node is fenced (``--node-is-fenced`` or ``[recovery] fence_command``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from fleet.errors import InputError
from service.cli import (
    DEFAULT_TIME_LIMIT_S,
    Format,
    FormatOpt,
    InventoryOpt,
    OutOpt,
    SolverOpt,
    TimeLimitOpt,
    WideOpt,
    WindowOpt,
    YesOpt,
    app,
    console,
    emit_json,
    execute_submitted,
    plan_app,
    review,
    run_nodes_job,
    runtime,
    show_nodes_plan,
    snapshot_of,
)
from service.operations.request_fields import Solver

FromBackupsOpt = Annotated[bool, typer.Option(
    "--from-backups", help="the node is dead: bring its containers back from their newest backups")]
FencedOpt = Annotated[bool, typer.Option(
    "--node-is-fenced", help="confirm the dead node is powered off and cannot come back by itself")]

recovery_app = typer.Typer(no_args_is_help=True, help="Evacuations of dead nodes from their backups.")
app.add_typer(recovery_app, name="recovery")


def _one_node(nodes: list[str]) -> str:
    if len(nodes) != 1:
        raise InputError("nodes", nodes, "--from-backups recovers one dead node at a time")
    return nodes[0]


@app.command("evacuate")
def evacuate(ctx: typer.Context, nodes: list[str], yes: YesOpt = False, window: WindowOpt = False,
             fmt: FormatOpt = Format.table, from_backups: FromBackupsOpt = False,
             node_is_fenced: FencedOpt = False) -> None:
    """Plan and execute the evacuation of NODES now (on-call); a dead node: --from-backups."""
    from service import recovery
    from service.recovery_render import render_recovery_plan

    if not from_backups:
        run_nodes_job(ctx, "evacuate", nodes, yes, window, fmt, refuse=recovery.refuse_offline)
        return
    rt = runtime(ctx)
    node = _one_node(nodes)
    fence = recovery.fence_of(rt, node_is_fenced)
    submitted = recovery.submit_recovery(rt, node, fence, review(fmt, yes, render_recovery_plan))
    execute_submitted(ctx, submitted, fmt, window=False)


@plan_app.command("evacuate")
def plan_evacuate(ctx: typer.Context, nodes: list[str], snapshot: InventoryOpt = None, out: OutOpt = None,
                  fmt: FormatOpt = Format.table, solver: SolverOpt = Solver.greedy.value,
                  time_limit: TimeLimitOpt = DEFAULT_TIME_LIMIT_S, from_backups: FromBackupsOpt = False,
                  wide: WideOpt = False) -> None:
    """Give every container on NODES a destination (nothing else moves); a dead node: --from-backups."""
    from service import recovery
    from service.recovery_render import render_recovery_plan

    if not from_backups:
        show_nodes_plan(ctx, "evacuate", nodes, snapshot, out, fmt, solver, time_limit, wide)
        return
    planned = recovery.plan_recovery(runtime(ctx), _one_node(nodes), snapshot_of(snapshot))
    if out:
        out.write_text(planned.plan.to_json(), encoding="utf-8")
    if fmt is Format.json:
        emit_json(planned.plan.to_dict())
    else:
        render_recovery_plan(console, planned.plan, planned.inventory)


@recovery_app.command("stale")
def stale(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Containers restored from backups, and their stale copies on the dead nodes (never deleted
    by ferry: kept stopped, not started on boot, marked, for you to remove)."""
    from service import recovery

    rows = recovery.stale_report(runtime(ctx))
    if fmt is Format.json:
        emit_json(rows)
        return
    for row in rows:
        console.print(f"job {row['job']} {row['ct']}: restored on {row['restored_on']}; copy on "
                      f"{row['node']}: {row['stale']}", markup=False, highlight=False)
    if not rows:
        console.print("no container was restored from a backup")

