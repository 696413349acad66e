"""``ferry maintenance create|list|show|approve|pause|resume|cancel``: saved campaigns, run by
``ferry serve`` (service.campaign_ops, service.campaign_drive); the twins of
``/v1/maintenance/campaigns`` (service.api_nodes).

Loaded by service.cli_node, beside ``ferry maintenance plan|run``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from service import campaign_ops
from service.cli import Format, FormatOpt, YesOpt, console, described, emit_json, request, runtime
from service.cli_node import maintenance_app
from service.render import plain

CampaignArg = Annotated[int, typer.Argument(help="the campaign's id, as in 'ferry maintenance list'")]
Req = campaign_ops.CampaignCreateRequest


@maintenance_app.command("create")
def maintenance_create(
    ctx: typer.Context,
    nodes: Annotated[str, typer.Option(help="comma-separated nodes, in the order to maintain them")],
    windows: Annotated[str | None, typer.Option(help="';'-separated windows (default: [schedule] windows)")] = None,
    max_out: Annotated[int, typer.Option("--max-out", help=described(Req, "max_out"))] = 1,
    maintenance: Annotated[str, typer.Option(help=described(Req, "maintenance"))] = "1h",
    start: Annotated[str | None, typer.Option(help=described(Req, "start"))] = None,
    yes: YesOpt = False, fmt: FormatOpt = Format.table,
) -> None:
    """Plan a campaign and save it for 'ferry serve' (pending until approved; --yes approves it)."""
    asked = request(Req, nodes=[n.strip() for n in nodes.split(",") if n.strip()],
                    windows=[w.strip() for w in windows.split(";") if w.strip()] if windows else None,
                    max_out=max_out, maintenance=maintenance, start=start, approve=yes)
    _show(campaign_ops.create_campaign(runtime(ctx), asked), fmt)


@maintenance_app.command("list")
def maintenance_list(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Saved campaigns, newest first."""
    rows = campaign_ops.list_campaigns(runtime(ctx))
    if fmt is Format.json:
        emit_json(rows)
        return
    table = Table(title="Maintenance campaigns", title_justify="left")
    for col in ("id", "state", "nodes", "groups done", "predicted end", "message"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["state"], plain(",".join(r["nodes"])), f"{r['done']}/{r['steps']}",
                      _when(r["predicted_end"]), plain(r["message"]))
    console.print(table)


@maintenance_app.command("show")
def maintenance_show(ctx: typer.Context, campaign_id: CampaignArg, fmt: FormatOpt = Format.table) -> None:
    """Each group's phase, the progress of its drain and restore jobs, its hook; predicted vs actual end."""
    _show(campaign_ops.show_campaign(runtime(ctx), campaign_id), fmt)


def _control(ctx: typer.Context, campaign: int, action: str, fmt: Format) -> None:
    changed = campaign_ops.control_campaign(runtime(ctx), campaign, action)
    if fmt is Format.json:
        emit_json(changed)
    else:
        console.print(f"campaign {campaign}: {changed['from']} -> {changed['state']}", markup=False, highlight=False)


@maintenance_app.command("approve")
def maintenance_approve(ctx: typer.Context, campaign_id: CampaignArg, fmt: FormatOpt = Format.table) -> None:
    """'ferry serve' starts it on its next poll (planned again from now if it named no start)."""
    _control(ctx, campaign_id, "approve", fmt)


@maintenance_app.command("pause")
def maintenance_pause(ctx: typer.Context, campaign_id: CampaignArg, fmt: FormatOpt = Format.table) -> None:
    """No new phase starts; its jobs in flight are paused (their moves in flight finish)."""
    _control(ctx, campaign_id, "pause", fmt)


@maintenance_app.command("resume")
def maintenance_resume(ctx: typer.Context, campaign_id: CampaignArg, fmt: FormatOpt = Format.table) -> None:
    """It goes on where it stopped, and its paused jobs with it."""
    _control(ctx, campaign_id, "resume", fmt)


@maintenance_app.command("cancel")
def maintenance_cancel(ctx: typer.Context, campaign_id: CampaignArg, fmt: FormatOpt = Format.table) -> None:
    """It stops for good; its unfinished jobs are cancelled (moves in flight roll back)."""
    _control(ctx, campaign_id, "cancel", fmt)


def _when(iso: str | None) -> str:
    return (iso or "-")[:16].replace("T", " ")


def _jobs(entries: list[dict[str, Any]]) -> str:
    return " ".join(f"{e['node']}:" + (f"job {e['job']} {e['state']} {e['done']}/{e['moves']}" if e["job"] else "-")
                    for e in entries) or "-"


def _show(detail: dict[str, Any], fmt: Format) -> None:
    if fmt is Format.json:
        emit_json(detail)
        return
    table = Table(title=f"Campaign {detail['id']}: {detail['state']} — {', '.join(detail['nodes'])}",
                  title_justify="left")
    for col in ("nodes", "phase", "drain", "hooks", "return", "predicted back", "back"):
        table.add_column(col)
    for step in detail["steps"]:
        hooks = " ".join(f"{n}:{h['state']}" for n, h in step["hooks"].items()) or "-"
        table.add_row(plain(",".join(step["nodes"])), step["phase"], _jobs(step["drain"]), plain(hooks),
                      _jobs(step["restore"]), _when(step["predicted"]["restore_end"]), _when(step["ended_at"]))
    console.print(table)
    console.print(f"predicted end: {_when(detail['predicted_end'])}   actual end: {_when(detail['actual_end'])}",
                  markup=False, highlight=False)
    if detail["message"]:
        console.print(f"message: {detail['message']}", markup=False, highlight=False)
