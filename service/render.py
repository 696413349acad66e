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
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from fleet.model import Inventory
from fleet.plan import Plan
from fleet.text import escape_unsafe
from service.lifecycle import MoveState

GIB = 1024**3
#: Said on every table of a command that acts on the simulated fleet, so that nobody mistakes its
#: figures for a real cluster's (set once per command by the CLI, see :func:`mark_fleet`).
_FLEET_MARK: ContextVar[str] = ContextVar("fleet_mark", default="")
SIMULATED = "SIMULATED fleet"


def mark_fleet(label: str) -> None:
    """Every title from now on says ``label`` (e.g. SIMULATED); "" for a real fleet."""
    _FLEET_MARK.set(label)


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


def render_plan(console: Console, plan: Plan, inv: Inventory | None = None, *, limit: int = 60) -> None:
    names = {c.id: c.name or "" for c in inv.containers} if inv else {}
    table = Table(title=title(f"Plan: {_goal_text(plan)} — {len(plan.moves)} moves"), title_justify="left")
    for col in ("#", "container", "from → to", "method", "wave", "GiB", "time", "down", "reason"):
        table.add_column(col, no_wrap=col != "reason", min_width=24 if col == "reason" else None,
                         justify="right" if col in ("#", "wave", "GiB", "time", "down") else "left")
    for i, move in enumerate(plan.moves[:limit], 1):
        p = move.predicted
        label = f"{move.ct} {names.get(move.ct, '')}".strip()
        table.add_row(str(i), plain(label), plain(f"{move.from_node} → {move.to}"), plain(move.method), str(move.wave),
                      f"{p.bytes / GIB:.0f}", f"{p.duration_s:.0f}s", f"{p.downtime_s:.1f}s", plain(move.reason))
    if len(plan.moves) > limit:
        table.caption = f"… and {len(plan.moves) - limit} more (use --format json for all)"
    console.print(table)
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


def render_jobs(console: Console, jobs: list[dict[str, Any]]) -> None:
    table = Table(title=title("Jobs"), title_justify="left")
    for col in ("id", "kind", "nodes", "state", "moves", "created", "message"):
        table.add_column(col, overflow="fold" if col == "message" else "ellipsis")
    for job in jobs:
        table.add_row(str(job["id"]), plain(job["kind"]), plain(" ".join(job["nodes"])), plain(job["state"]),
                      f"{job['done']}/{job['moves']}", plain(job["created_at"][:19]), plain(job["message"]))
    console.print(table)


def job_view(job: dict[str, Any]) -> Group:
    """A job as people read it: its state, then one row per move (what ``--watch`` refreshes)."""
    counts = Counter(m["state"] for m in job["moves"])
    head = Text.assemble(plain(f"job {job['id']}", "bold"), plain(f" {job['kind']} {' '.join(job['nodes'])}: "),
                         plain(job["state"], "bold"),
                         plain(" — " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))))
    table = Table(title=title("Moves"), title_justify="left")
    for col in ("ct", "from → to", "method", "state", "step", "message"):
        table.add_column(col, overflow="fold" if col == "message" else "ellipsis")
    for m in job["moves"]:
        step = f"{m['step']} ({m['phase']})" if m["step"] else ""
        style = {MoveState.RUNNING: "cyan", MoveState.SUCCEEDED: "green", MoveState.ROLLED_BACK: "yellow",
                 MoveState.FAILED: "red"}.get(m["state"])
        table.add_row(plain(m["ct"]), plain(f"{m['from']} → {m['to']}"), plain(m["method"]),
                      plain(m["state"], style or ""), plain(step), plain(m["message"]))
    foot = Text.assemble(plain(job["message"]), f"\njournal: {len(job['journal'])} entries (--format json shows them)")
    for done in job.get("actions", []):
        foot.append("\n")
        foot.append_text(plain(f"{done['action']} by {done['by']} at {done['at'][:19]} UTC"))
    return Group(head, table, foot)


def render_job(console: Console, job: dict[str, Any]) -> None:
    console.print(job_view(job))


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
