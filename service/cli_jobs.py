"""``ferry jobs``, ``ferry job …`` and ``ferry cleanup``: list, follow and control stored jobs.

    store --service.operations--> job rows / detail --render--> table | JSON
    ``job show --watch``: the detail re-read every second (running and failed moves first) until
    the job ends, then the job's exit code, as if this command had run it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from service import cli_options
from service.cli import app, job_app, jobs_app
from service.cli_options import Format, FormatOpt, JobArg, WideOpt, asks, console, emit_json, runtime

if TYPE_CHECKING:
    from service.runtime import Runtime

#: ``--watch`` re-reads the job this often, and gives up after this long (it says so and exits 5).
WATCH_PERIOD_S = 1.0
WATCH_LIMIT_S = 24 * 3600.0


@jobs_app.callback()
def jobs_list(ctx: typer.Context, fmt: FormatOpt = Format.table, limit: Annotated[
        int, typer.Option(metavar="JOBS", help="newest jobs to list")] = cli_options.DEFAULT_JOB_LIMIT,
        wide: WideOpt = False) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from service import render
    from service.operations.listing import list_jobs_from_sqlite

    if not 1 <= limit <= cli_options.MAX_JOB_LIMIT:  # refused in the API's words
        cli_options.request(asks.JobListRequest, limit=limit)
    jobs = list_jobs_from_sqlite(cli_options.config(ctx).database_url, limit)
    if jobs is None:  # not SQLite, or the store is new or older: the ORM creates or migrates it
        jobs = asks.list_jobs(runtime(ctx), limit)
    emit_json(jobs) if fmt is Format.json else render.render_jobs(console, jobs, wide=wide)


@jobs_app.command("resume")
def jobs_resume(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Continue every unfinished job from what the store and the world say."""
    from service import operations as ops
    from service import render
    from service.exits import exit_for_jobs

    summaries = ops.resume_unfinished(runtime(ctx))
    results = [summary.to_dict() for summary in summaries]
    if fmt is Format.json:
        emit_json(results)
    elif not results:
        console.print("no unfinished jobs")
    for summary in results if fmt is Format.table else []:
        render.render_summary(console, summary)
    exit_for_jobs(cli_options.err_console, summaries)


@app.command()
def cleanup(ctx: typer.Context, fmt: FormatOpt = Format.table) -> None:
    """Finish cleanups left for later: retire kept sources whose retention ended, stop forwarders."""
    from service import operations as ops

    lines = ops.run_cleanups(runtime(ctx))
    if fmt is Format.json:
        emit_json(lines)
    else:
        console.print("\n".join(lines) if lines else "no cleanup pending", markup=False, highlight=False)


@job_app.command("show")
def job_show(ctx: typer.Context, job_id: JobArg, fmt: FormatOpt = Format.table, watch: Annotated[
        bool, typer.Option("--watch", "-w", help="refresh every second until the job ends; exit with its code")] = False,
        wide: WideOpt = False) -> None:
    """A job's moves and state (with --format json: and its journal of every command)."""
    from service import operations as ops
    from service import render

    rt = runtime(ctx)
    detail = ops.job_detail(rt, job_id)
    if fmt is Format.json:
        emit_json(detail)
    elif watch:
        watch_job(rt, detail, wide)
    else:
        render.render_job(console, detail, wide=wide)
        if detail["window"]:
            console.print("its moves start only inside the configured maintenance windows")


def watch_job(rt: Runtime, detail: dict, wide: bool, *, limit_s: float = WATCH_LIMIT_S) -> None:
    """Refresh the job's view until it ends (or ``limit_s`` passed), then exit as a run would."""
    from rich.live import Live

    from service import operations as ops
    from service import render
    from service.exits import exit_for_jobs
    from service.lifecycle import JOB_FINAL

    deadline = time.monotonic() + limit_s
    console.print(f"watching job {detail['id']} until it ends (Ctrl-C stops watching; the job goes on)",
                  markup=False, highlight=False)
    console.file.flush()
    try:
        with Live(render.job_view(detail, wide=wide, watching=True), console=console, refresh_per_second=2,
                  auto_refresh=False) as live:
            while detail["state"] not in JOB_FINAL and time.monotonic() < deadline:
                time.sleep(WATCH_PERIOD_S)
                detail = ops.job_detail(rt, detail["id"])
                live.update(render.job_view(detail, wide=wide, watching=True), refresh=True)
    except KeyboardInterrupt:  # only the watching stops: the job runs where it ran
        cli_options.err_console.print(f"ferry: stopped watching job {detail['id']}; it goes on",
                                      markup=False, highlight=False)
        raise typer.Exit(130) from None
    if detail["state"] not in JOB_FINAL:
        cli_options.err_console.print(f"ferry: stopped watching job {detail['id']} after {limit_s:.0f} s; it is "
                          f"{detail['state']}", markup=False, highlight=False)
    exit_for_jobs(cli_options.err_console, [render.ended_job(detail)])


def _control(ctx: typer.Context, job_id: int, action: str) -> None:
    from service import operations as ops
    from service.users import cli_actor

    changed = ops.control(runtime(ctx), job_id, action, actor=cli_actor())
    console.print(f"job {job_id}: {changed['from']} -> {changed['state']}")


@job_app.command("approve")
def job_approve(ctx: typer.Context, job_id: JobArg) -> None:
    """A pending job becomes approved: 'ferry serve' (or 'ferry jobs resume') runs it."""
    _control(ctx, job_id, "approve")


@job_app.command("cancel")
def job_cancel(ctx: typer.Context, job_id: JobArg) -> None:
    """Stop starting moves; moves in flight roll back. Run 'ferry jobs resume' if no ferry runs it."""
    _control(ctx, job_id, "cancel")


@job_app.command("pause")
def job_pause(ctx: typer.Context, job_id: JobArg) -> None:
    """Start no new moves; moves in flight finish."""
    _control(ctx, job_id, "pause")


@job_app.command("resume")
def job_resume(ctx: typer.Context, job_id: JobArg, fmt: FormatOpt = Format.table) -> None:
    """Approve a paused or pending job and run it to the end in this process."""
    from service import operations as ops
    from service import render
    from service.exits import exit_for_jobs
    from service.users import cli_actor

    rt = runtime(ctx)
    ops.control(rt, job_id, "resume", actor=cli_actor())
    summary = ops.run_here(rt, job_id)
    emit_json(summary.to_dict()) if fmt is Format.json else render.render_summary(console, summary.to_dict())
    exit_for_jobs(cli_options.err_console, [summary])
