"""``ferry maintenance create|list|show|approve|pause|resume|cancel``: saved campaigns, run by
``ferry serve`` (service.campaign_ops, service.campaign_drive); the twins of
``/v1/maintenance/campaigns`` (service.api_nodes).

Loaded by service.cli_node, beside ``ferry maintenance plan|run``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Annotated, Any

import typer
from rich.table import Table

from service.cli import Format, FormatOpt, YesOpt, console, emit_json, runtime
from service.cli_node import (
    MaintenanceOpt,
    MaxOutOpt,
    NodesOpt,
    StartOpt,
    WindowsOpt,
    maintenance_app,
    plan_request,
)


def _ops() -> ModuleType:
    """service.campaign_ops, loaded when a verb runs (it loads the store: the CLI starts without)."""
    from service import campaign_ops

    return campaign_ops


CampaignArg = Annotated[int, typer.Argument(help="the campaign's id, as in 'ferry maintenance list'")]


@maintenance_app.command("create")
def maintenance_create(ctx: typer.Context, nodes: NodesOpt, windows: WindowsOpt = None, max_out: MaxOutOpt = 1,
                       maintenance: MaintenanceOpt = "1h", start: StartOpt = None, yes: YesOpt = False,
                       fmt: FormatOpt = Format.table) -> None:
    """Plan a campaign and save it for 'ferry serve' (pending until approved; --yes approves it)."""
    asked = plan_request(_ops().CampaignCreateRequest, nodes, windows, max_out=max_out,
                         maintenance=maintenance, start=start, approve=yes)
    _show(_ops().create_campaign(runtime(ctx), asked), fmt)


@maintenance_app.command("list")
def maintenance_list(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Saved campaigns, newest first."""
    from service.render import plain

    rows = _ops().list_campaigns(runtime(ctx))
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
    _show(_ops().show_campaign(runtime(ctx), campaign_id), fmt)


CONTROL_HELP = {
    "approve": "'ferry serve' starts it on its next poll (planned again from now if it named no start).",
    "pause": "No new phase starts; its jobs in flight are paused (their moves in flight finish).",
    "resume": "It goes on where it stopped, and its paused jobs with it.",
    "cancel": "It stops for good; its unfinished jobs are cancelled (moves in flight roll back).",
}


def _control_command(action: str) -> Any:
    def control(ctx: typer.Context, campaign_id: CampaignArg, fmt: FormatOpt = Format.table) -> None:
        changed = _ops().control_campaign(runtime(ctx), campaign_id, action)
        if fmt is Format.json:
            emit_json(changed)
        else:
            console.print(f"campaign {campaign_id}: {changed['from']} -> {changed['state']}", markup=False,
                          highlight=False)

    control.__name__, control.__doc__ = f"maintenance_{action}", CONTROL_HELP[action]
    return control


for _action in CONTROL_HELP:
    maintenance_app.command(_action)(_control_command(_action))


def _when(iso: str | None) -> str:
    return (iso or "-")[:16].replace("T", " ")


def _jobs(entries: list[dict[str, Any]]) -> str:
    return " ".join(f"{e['node']}:" + (f"job {e['job']} {e['state']} {e['done']}/{e['moves']}" if e["job"] else "-")
                    for e in entries) or "-"


def _show(detail: dict[str, Any], fmt: Format) -> None:
    from service.render import plain

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
