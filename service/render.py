"""Tables for people (Rich). JSON for scripts is produced by the callers, not here.

An on-call engineer reads a plan at 3 a.m.: the tables put what matters first — which container
goes where and why, and each node's load before → after as a bar.

Names, hostnames, tags, ids and messages come from customers and from files that travel: they
reach Rich only through :func:`plain`, as text that is never read as markup (a container named
``[/bold]`` or ``[link=…]`` is shown as written) and with control and bidi characters escaped.
"""

from __future__ import annotations

from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from fleet.text import escape_unsafe
from service.lifecycle import MOVE_IN_FLIGHT, MOVE_PROBLEM, MoveState

if TYPE_CHECKING:  # annotations only: listing jobs needs no fleet model
    from fleet.model import Inventory
    from fleet.plan import Plan

GIB = 1024**3
#: Said on every table of a command that acts on the simulated fleet, so that nobody mistakes its
#: figures for a real cluster's (set once per command by the CLI, see :func:`mark_fleet`).
_FLEET_MARK: ContextVar[str] = ContextVar("fleet_mark", default="")
SIMULATED = "SIMULATED fleet"


def mark_fleet(label: str) -> None:
    """Every title from now on says ``label`` (e.g. SIMULATED); "" for a real fleet."""
    _FLEET_MARK.set(label)


def show_table(console: Console, table: Table, wide: bool) -> None:
    """Print a table within the terminal's width (long cells wrap), or, with ``--wide``, one line per
    row however wide it gets (for a terminal that scrolls sideways, or a file)."""
    if not wide:
        console.print(table)
        return
    for column in table.columns:
        column.no_wrap, column.overflow = True, "ignore"
    wide_console(console).print(table)


def wide_console(console: Console) -> Console:
    """A console writing where ``console`` writes, with no width limit (Rich never prints wider
    than its console, whatever ``print`` is asked)."""
    return Console(file=console.file, width=100_000, color_system=console.color_system,  # type: ignore[arg-type]
                   force_terminal=console.is_terminal, soft_wrap=True)


def utc_time(stamp: str | None) -> str:
    """An ISO time from the store, as a table shows it: ``2026-12-01 20:15:07`` (columns say UTC)."""
    return (stamp or "")[:19].replace("T", " ")


def title(text: str) -> Text:
    """A table's title: untrusted text as plain, then the fleet's mark, if any, in reverse video."""
    mark = _FLEET_MARK.get()
    return Text.assemble(plain(text), (f"  [{mark}]", "bold reverse") if mark else "")


def plain(value: object, style: str = "") -> Text:
    """Untrusted text as a Rich cell: never markup, control and bidi characters made visible."""
    return Text(escape_unsafe(str(value)), style=style)


def load_bar(fraction: float, width: int = 12) -> Text:
    """``█████░░░░░░░  41 %``, green / yellow / red by level."""
    fraction = max(0.0, fraction)
    filled = min(width, round(fraction * width))
    style = "green" if fraction < 0.7 else "yellow" if fraction < 0.9 else "red"
    bar = Text("█" * filled, style=style)
    bar.append("░" * (width - filled), style="dim")
    bar.append(f" {fraction * 100:3.0f} %")
    return bar


def node_loads(inv: Inventory) -> dict[str, dict[str, float]]:
    """Configured memory / CPUs and used disk as fractions of each node (what plans call usage)."""
    out = {}
    for node in inv.nodes:
        cts = inv.on_node(node.name)
        total_disk = sum(s.total_gb for s in node.storage.values() if not s.shared)
        used_disk = sum(s.used_gb for s in node.storage.values() if not s.shared)
        out[node.name] = {
            "memory": sum(c.memory_mb for c in cts) / node.memory_mb,
            "cpu": sum(c.cpus for c in cts) / node.cpus,
            "disk": used_disk / total_disk if total_disk else 0.0,
            "containers": len(cts),
        }
    return out


def render_inventory(console: Console, inv: Inventory) -> None:
    loads = node_loads(inv)
    table = Table(title=title(f"Fleet: {len(inv.nodes)} nodes, {len(inv.containers)} containers"),
                  title_justify="left")
    for col in ("node", "platform", "state", "cts", "memory (configured)", "vCPUs", "disk"):
        table.add_column(col, justify="right" if col == "cts" else "left", no_wrap=True)
    for node in inv.nodes:
        load = loads[node.name]
        state = "offline" if not node.online else "maintenance" if node.maintenance else node.state or "online"
        table.add_row(plain(node.name), plain(node.platform), Text(state, style="green" if state == "online" else "red"),
                      str(load["containers"]), load_bar(load["memory"]),
                      f"{load['cpu'] * node.cpus:.0f}/{node.cpus}", load_bar(load["disk"], 6))
    console.print(table)


def render_node_states(console: Console, rows: list[dict[str, Any]]) -> None:
    """``ferry node list``: each node's lifecycle state and the job it follows."""
    table = Table(title="Nodes", title_justify="left")
    for col in ("node", "state", "cts", "job", "HA maintenance", "note"):
        table.add_column(col, no_wrap=col != "note")
    for row in rows:
        table.add_row(plain(row["node"]), Text(row["state"], style="green" if row["state"] == "active" else "yellow"),
                      str(row["containers"]), str(row["job"] or ""), "yes" if row["ha_maintenance"] else "",
                      plain(row["message"]))
    console.print(table)


def _span(phase: dict[str, Any]) -> str:
    if phase["start"] is None:
        return "-"
    return f"{phase['start'][:16].replace('T', ' ')} → {phase['end'][:16].replace('T', ' ')} ({len(phase['moves'])} moves)"


def render_calendar(console: Console, calendar: dict[str, Any]) -> None:
    """``ferry maintenance plan``: each group's drain, maintenance and return, then the predicted end."""
    table = Table(title=f"Rolling maintenance of {', '.join(calendar['nodes'])} "
                        f"(at most {calendar['max_out']} out)", title_justify="left")
    for col in ("nodes", "drain", "maintenance until", "return"):
        table.add_column(col)
    for step in calendar["steps"]:
        until = (step["maintenance_until"] or "-")[:16].replace("T", " ")
        table.add_row(plain(",".join(step["nodes"])), _span(step["drain"]), until, _span(step["restore"]))
    console.print(table)
    console.print(f"predicted end: {calendar['predicted_end']}", markup=False, highlight=False)
    for problem in calendar["problems"]:
        console.print(Text(f"problem: {escape_unsafe(problem)}", style="yellow"))


def _goal_text(plan: Plan) -> str:
    nodes = " ".join(plan.goal.nodes)
    return f"{plan.goal.kind} {nodes}".strip()


def offline_in(plan: Plan, inv: Inventory | None) -> list[str]:
    """The nodes a plan touches (its goal's, and every move's ends) that are offline in ``inv``."""
    touched = {*plan.goal.nodes, *(m.from_node for m in plan.moves), *(m.to for m in plan.moves)}
    return sorted(n.name for n in (inv.nodes if inv else []) if n.name in touched and not n.online)


def render_plan(console: Console, plan: Plan, inv: Inventory | None = None, *, limit: int = 60,
                wide: bool = False) -> None:
    """The moves (the reason wraps within 80 columns; ``wide``: one line each), then the loads."""
    names = {c.id: c.name or "" for c in inv.containers} if inv else {}
    table = Table(title=title(f"Plan: {_goal_text(plan)} — {len(plan.moves)} moves"), title_justify="left",
                  box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False)
    for col in ("#", "container", "from → to", "method", "wave", "GiB", "time", "down", "reason"):
        table.add_column(col, no_wrap=col not in ("reason", "container"), overflow="fold",
                         ratio=1 if col == "reason" else None,
                         justify="right" if col in ("#", "wave", "GiB", "time", "down") else "left")
    for i, move in enumerate(plan.moves[:limit], 1):
        p = move.predicted
        label = f"{move.ct} {names.get(move.ct, '')}".strip()
        table.add_row(str(i), plain(label), plain(f"{move.from_node} → {move.to}"), plain(move.method), str(move.wave),
                      f"{p.bytes / GIB:.0f}", f"{p.duration_s:.0f}s", f"{p.downtime_s:.1f}s", plain(move.reason))
    if len(plan.moves) > limit:
        table.caption = f"… and {len(plan.moves) - limit} more (use --format json for all)"
    show_table(console, table, wide)
    for name in offline_in(plan, inv):
        console.print(plain(f"node {name} is offline (unreachable): nothing can be copied from it", style="bold red"))
    for item in plan.unplaced:
        console.print(plain(f"unplaced {item.ct}: {item.reason}", style="bold red"))
    nodes = Table(title=title("Node load (configured memory): before → after"), title_justify="left")
    for col in ("node", "before", "after"):
        nodes.add_column(col, no_wrap=True)
    for name in sorted(set(plan.before) | set(plan.after)):
        before, after = plan.before.get(name), plan.after.get(name)
        nodes.add_row(plain(name), load_bar(before.memory if before else 0), load_bar(after.memory if after else 0))
    console.print(nodes)
    s = plan.score
    console.print(f"peak memory {s.peak_memory * 100:.1f} % (proven lower bound "
                  f"{s.lower_bound_peak_memory * 100:.1f} %), spread {s.spread:.3f}, {s.moves} moves, "
                  f"{s.bytes / GIB:.0f} GiB to copy, predicted makespan {s.predicted_makespan_s:.0f} s")


def render_place(console: Console, result: dict[str, Any]) -> None:
    """Where a new container would go: the candidates best first, then the nodes that cannot."""
    table = Table(title=title(f"Place: best node {result['best'] or '(none)'}"), title_justify="left")
    for col in ("#", "node", "score", "reason"):
        table.add_column(col, overflow="fold" if col == "reason" else "ellipsis")
    for i, row in enumerate(result["candidates"], 1):
        table.add_row(str(i), plain(row["node"]), f"{row['score']:.4f}", plain(row["reason"]))
    for row in result["rejected"]:
        table.add_row("-", plain(row["node"]), "", plain(row["reason"], "red"))
    console.print(table)


def render_jobs(console: Console, jobs: list[dict[str, Any]], *, wide: bool = False) -> None:
    table = Table(title=title("Jobs"), title_justify="left")
    for col in ("id", "kind", "nodes", "state", "moves", "created (UTC)", "message"):
        table.add_column(col, overflow="fold", no_wrap=col in ("id", "state", "moves"),
                         min_width=12 if col == "message" else None)
    for job in jobs:
        table.add_row(str(job["id"]), plain(job["kind"]), plain(" ".join(job["nodes"])), plain(job["state"]),
                      f"{job['done']}/{job['moves']}", plain(utc_time(job["created_at"])), plain(job["message"]))
    show_table(console, table, wide)


def watch_order(moves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Moves as ``--watch`` lists them: in flight first, then failed or rolled back, then the rest
    (each group in the plan's order), so what needs eyes is on the first screen."""
    def rank(move: dict[str, Any]) -> int:
        return 0 if move["state"] in MOVE_IN_FLIGHT else 1 if move["state"] in MOVE_PROBLEM else 2
    return sorted(moves, key=rank)


def job_view(job: dict[str, Any], *, wide: bool = False, watching: bool = False) -> Group:
    """A job as people read it: its state, then one row per move (what ``--watch`` refreshes, with
    the moves in :func:`watch_order`)."""
    counts = Counter(m["state"] for m in job["moves"])
    head = Text.assemble(plain(f"job {job['id']}", "bold"), plain(f" {job['kind']} {' '.join(job['nodes'])}: "),
                         plain(job["state"], "bold"),
                         plain(" — " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))))
    table = Table(title=title("Moves"), title_justify="left")
    for col in ("ct", "from → to", "method", "state", "step", "message"):
        table.add_column(col, overflow="fold", no_wrap=wide or col in ("ct", "state"),
                         min_width=12 if col == "message" else None)
    for m in watch_order(job["moves"]) if watching else job["moves"]:
        step = f"{m['step']} ({m['phase']})" if m["step"] else ""
        style = {MoveState.RUNNING: "cyan", MoveState.SUCCEEDED: "green", MoveState.ROLLED_BACK: "yellow",
                 MoveState.FAILED: "red"}.get(m["state"])
        table.add_row(plain(m["ct"]), plain(f"{m['from']} → {m['to']}"), plain(m["method"]),
                      plain(m["state"], style or ""), plain(step), plain(m["message"]))
    foot = Text.assemble(plain(job["message"]), f"\njournal: {len(job['journal'])} entries (--format json shows them)")
    for done in job.get("actions", []):
        foot.append("\n")
        foot.append_text(plain(f"{done['action']} by {done['by']} at {utc_time(done['at'])} UTC"))
    return Group(head, table, foot)


def render_job(console: Console, job: dict[str, Any], *, wide: bool = False) -> None:
    """``ferry job show``: within the terminal's width, or one line per move with ``wide``."""
    (wide_console(console) if wide else console).print(job_view(job, wide=wide))


@dataclass(frozen=True)
class EndedJobView:
    """A job's detail in the shape the exit code is decided from (service.exits.EndedJob)."""

    job_id: int
    state: str
    messages: list[str] = field(default_factory=list)


def ended_job(job: dict[str, Any]) -> EndedJobView:
    """The exit-code view of a job's detail: its state, and the first problem said by a move."""
    problems = [m["message"] for m in job["moves"] if m["state"] in MOVE_PROBLEM and m["message"]]
    return EndedJobView(job["id"], str(job["state"]), problems or ([job["message"]] if job["message"] else []))


def render_summary(console: Console, summary: dict[str, Any]) -> None:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items()))
    console.print(plain(f"job {summary['job_id']}: {summary['state']}", "bold"), plain(f"— {counts}"))
    console.print(f"copied {summary['bytes'] / GIB:.1f} GiB; makespan {summary['makespan_s']:.0f} s "
                  f"(predicted {summary['predicted_makespan_s']:.0f} s); downtime summed over moves "
                  f"{summary['observed_downtime_s']:.0f} s (predicted {summary['predicted_downtime_s']:.0f} s)")
    if summary.get("rpo_s"):  # restores from backups: the oldest data brought back
        console.print(f"restored from backups: data up to {summary['rpo_s'] / 3600:.1f} h old (RPO)")
    for message in summary["messages"][:10]:
        console.print(plain(f"  {message}", "yellow"))
