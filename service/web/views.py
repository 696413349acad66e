"""The console's HTML fragments, rendered on the server from the same records the CLI shows.

    inventory --fleet_view--> one row per node: state, load bars (memory, CPU, disk), containers
    pending jobs --plans_view--> moves with reasons and predictions, the bound, an SVG before -> after
    jobs --jobs_view--> the list;  job detail --job_view--> per-move progress + journal + who did what

Every value that comes from a fleet, a plan or a person goes through :func:`esc` (names and
messages are untrusted: a container named ``<script>`` is shown as written). No template engine:
the fragments are small, and f-strings over escaped values keep ferry free of another dependency.
"""

from __future__ import annotations

import html
from typing import Any

from adapters.base import STEPS
from fleet.model import Inventory
from service.lifecycle import JOB_FINAL, JobState, MoveState
from service.render import node_loads

MIB = 1024**2


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def pct(fraction: float) -> str:
    return f"{max(0.0, fraction) * 100:.0f} %"


def bar(fraction: float, label: str) -> str:
    """A CSS load bar; the level class colours it (green / amber / red)."""
    level = "ok" if fraction < 0.7 else "warn" if fraction < 0.9 else "hot"
    width = min(100.0, max(0.0, fraction * 100))
    return (f'<div class="bar {level}" title="{esc(label)} {pct(fraction)}">'
            f'<span style="width:{width:.1f}%"></span><em>{pct(fraction)}</em></div>')


def node_state(node: Any) -> str:
    """A node's lifecycle word where the fleet records one (cordoned, draining, maintenance)."""
    state = getattr(node, "state", None)
    if state:
        return str(getattr(state, "value", state))
    return "ready" if getattr(node, "receives", True) else "takes nothing"


def fleet_view(inv: Inventory) -> str:
    loads = node_loads(inv)
    rows = "".join(
        f'<tr data-node="{esc(n.name)}"><th>{esc(n.name)}</th><td class="state">{esc(node_state(n))}</td>'
        f'<td>{bar(loads[n.name]["memory"], "memory")}</td><td>{bar(loads[n.name]["cpu"], "CPU")}</td>'
        f'<td>{bar(loads[n.name]["disk"], "disk")}</td><td class="num">{int(loads[n.name]["containers"])}</td></tr>'
        for n in inv.nodes)
    return (f'<p class="caption">{len(inv.nodes)} nodes, {len(inv.containers)} containers</p>'
            '<table id="fleet-table"><thead><tr><th>node</th><th>state</th><th>memory</th><th>CPU</th>'
            f'<th>disk</th><th>containers</th></tr></thead><tbody>{rows}</tbody></table>')


def before_after_chart(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Each node's memory load before (grey) and after (blue) the plan, as an inline SVG."""
    nodes = sorted(set(before) | set(after))
    row, width, label = 26, 320, 70
    parts = ['<p class="caption">memory per node: <span class="key before">before</span> → '
             '<span class="key after">after</span></p>'
             f'<svg class="chart" role="img" aria-label="memory before and after" width="{label + width + 130}" '
             f'height="{row * len(nodes) + 20}">']
    for i, name in enumerate(nodes):
        y = 10 + i * row
        old = float(before.get(name, {}).get("memory", 0.0))
        new = float(after.get(name, {}).get("memory", 0.0))
        parts.append(f'<text x="0" y="{y + 14}">{esc(name)}</text>'
                     f'<rect class="before" x="{label}" y="{y}" width="{min(old, 1.2) * width:.1f}" height="9"/>'
                     f'<rect class="after" x="{label}" y="{y + 10}" width="{min(new, 1.2) * width:.1f}" height="9"/>'
                     f'<text x="{label + width + 8}" y="{y + 14}">{pct(old)} → {pct(new)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _button(url: str, label: str, css: str, allowed: bool, confirm: str = "") -> str:
    if not allowed:
        return ""
    ask = f' hx-confirm="{esc(confirm)}"' if confirm else ""
    return (f'<button class="{css}" hx-post="{esc(url)}" hx-target="closest section" '
            f'hx-swap="innerHTML"{ask}>{esc(label)}</button>')


def plan_card(job: dict[str, Any], can_act: bool) -> str:
    plan = job["plan"]
    score = plan.get("score", {})
    moves = "".join(
        f'<tr><td>{esc(m["ct"])}</td><td>{esc(m["from"])} → {esc(m["to"])}</td><td>{esc(m["method"])}</td>'
        f'<td class="num">{m.get("predicted", {}).get("duration_s", 0):.0f} s</td>'
        f'<td class="num">{m.get("predicted", {}).get("downtime_s", 0):.0f} s</td><td>{esc(m.get("reason", ""))}</td></tr>'
        for m in plan.get("moves", []))
    bound = (f'peak memory {pct(score.get("peak_memory", 0))} (proven bound '
             f'{pct(score.get("lower_bound_peak_memory", 0))}), predicted makespan '
             f'{score.get("predicted_makespan_s", 0):.0f} s')
    actions = (_button(f"/ui/plans/{job['id']}/approve", "Approve", "approve", can_act)
               + _button(f"/ui/plans/{job['id']}/reject", "Reject", "reject", can_act, "Reject this plan?"))
    return (f'<article class="plan" id="plan-{job["id"]}"><h3>job {job["id"]}: {esc(job["kind"])} '
            f'{esc(" ".join(job["nodes"]))}</h3><p>{esc(bound)}</p>'
            f'{before_after_chart(plan["before"], plan["after"]) if plan.get("before") else ""}'
            '<table><thead><tr><th>ct</th><th>from → to</th><th>method</th><th>duration</th><th>downtime</th>'
            f'<th>reason</th></tr></thead><tbody>{moves}</tbody></table><div class="actions">{actions}</div></article>')


def plans_view(pending: list[dict[str, Any]], can_act: bool, note: str = "") -> str:
    head = f'<p class="note">{esc(note)}</p>' if note else ""
    if not pending:
        return head + '<p class="empty">no plans waiting for review</p>'
    return head + "".join(plan_card(job, can_act) for job in pending)


def jobs_view(jobs: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr data-job="{j["id"]}"><td><a href="#" hx-get="/ui/jobs/{j["id"]}" hx-target="#job-detail">'
        f'job {j["id"]}</a></td><td>{esc(j["kind"])}</td><td>{esc(" ".join(j["nodes"]))}</td>'
        f'<td class="state">{esc(j["state"])}</td><td class="num">{j["done"]}/{j["moves"]}</td>'
        f'<td>{esc(j["created_at"][:19])} UTC</td></tr>' for j in jobs)
    return ('<table id="jobs-table"><thead><tr><th>job</th><th>kind</th><th>nodes</th><th>state</th>'
            f'<th>moves</th><th>created</th></tr></thead><tbody>{rows}</tbody></table>')


def move_progress(move: dict[str, Any], now: float | None) -> tuple[float, str]:
    """How far a move is (0..1, by saga steps done) and its figures as people read them."""
    figures, predicted = move.get("figures") or {}, move.get("predicted") or {}
    if move["state"] == MoveState.SUCCEEDED:
        done = 1.0
    elif move.get("step") in STEPS:
        index = STEPS.index(move["step"]) + (1 if move.get("phase") == "done" else 0)
        done = index / len(STEPS)
    else:
        done = 0.0
    copied = float(figures.get("bytes", 0.0))
    parts = [f"{copied / MIB:.0f} MiB"]
    if figures.get("transfer_s"):
        parts.append(f"{copied / MIB / float(figures['transfer_s']):.0f} MB/s")
    started = move.get("started_at")
    if now is not None and started is not None and move["state"] == MoveState.RUNNING:
        eta = max(0.0, float(predicted.get("duration_s", 0.0)) - (now - float(started)))
        parts.append(f"ETA {eta:.0f} s")
    parts.append(f"downtime {float(figures.get('downtime_s', 0.0)):.1f} s")
    if move["state"] == MoveState.SUCCEEDED and "duration_s" in figures:
        parts.append(f"took {figures['duration_s']:.0f} s (predicted {predicted.get('duration_s', 0):.0f} s)")
    return done, ", ".join(parts)


def progress_view(job: dict[str, Any], now: float | None = None) -> str:
    """The part of a job that moves: its state and one progress bar per move (what SSE pushes)."""
    rows = []
    for m in job["moves"]:
        done, figures = move_progress(m, now)
        step = f'{m["step"]} ({m["phase"]})' if m.get("step") else ""
        rows.append(f'<tr data-ct="{esc(m["ct"])}" data-state="{esc(m["state"])}"><td>{esc(m["ct"])}</td>'
                    f'<td>{esc(m["from"])} → {esc(m["to"])}</td><td class="state">{esc(m["state"])}</td>'
                    f'<td>{esc(step)}</td><td><progress max="100" value="{done * 100:.0f}"></progress></td>'
                    f'<td>{esc(figures)}</td><td>{esc(m.get("message", ""))}</td></tr>')
    total = sum(move_progress(m, now)[0] for m in job["moves"]) / max(1, len(job["moves"]))
    return (f'<p class="job-state" data-state="{esc(job["state"])}" data-progress="{total * 100:.0f}">'
            f'job {job["id"]}: <strong>{esc(job["state"])}</strong> — {total * 100:.0f} % '
            f'{esc(job.get("message", ""))}</p><table class="moves"><thead><tr><th>ct</th><th>from → to</th>'
            '<th>state</th><th>step</th><th>progress</th><th>figures</th><th>message</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def controls_view(job: dict[str, Any], can_act: bool) -> str:
    state, url = job["state"], f"/ui/jobs/{job['id']}/"
    wanted = {"pause": state in (JobState.APPROVED, JobState.RUNNING), "resume": state == JobState.PAUSED,
              "cancel": state in (JobState.PENDING, JobState.APPROVED, JobState.RUNNING, JobState.PAUSED)}
    buttons = "".join(
        f'<button class="{action}" hx-post="{url}{action}" hx-target="#job-detail">{action.capitalize()}</button>'
        for action, show in wanted.items() if show and can_act)
    return f'<div class="actions">{buttons}</div>'


def journal_view(job: dict[str, Any], limit: int = 200) -> str:
    rows = "".join(
        f'<tr><td>{esc(j["at"][11:19])}</td><td>{esc(j["ct"] or "")}</td><td>{esc(j["step"] or "")}</td>'
        f'<td>{esc(j["kind"])}</td><td>{esc(j["host"])}</td><td><code>{esc(j["what"])}</code></td>'
        f'<td>{esc("" if j["status"] is None else j["status"])}</td></tr>' for j in job["journal"][-limit:])
    return (f'<details class="journal"><summary>journal ({len(job["journal"])} entries, newest {limit}; '
            'UTC)</summary><table><thead><tr><th>at</th><th>ct</th><th>step</th><th>kind</th><th>host</th>'
            f'<th>what</th><th>status</th></tr></thead><tbody>{rows}</tbody></table></details>')


def actions_list(job: dict[str, Any]) -> str:
    items = "".join(f'<li>{esc(a["action"])} by <b>{esc(a["by"])}</b> at {esc(a["at"][:19])} UTC</li>'
                    for a in job.get("actions", []))
    return f'<ul class="who">{items}</ul>' if items else ""


def job_view(job: dict[str, Any], can_act: bool, now: float | None) -> str:
    """A job's panel. While the job is not final it follows an SSE stream (static/console.js):
    ``progress`` events replace the progress table, ``controls`` (sent only when the job's state
    differs from the one the panel shows) the buttons, and ``done`` reloads the whole panel
    (journal, who did what), which then has no stream, so the browser stops listening."""
    job_id = job["id"]
    live = ("" if job["state"] in JOB_FINAL else
            f' data-events="/ui/jobs/{job_id}/events?shown={esc(job["state"])}" data-reload="/ui/jobs/{job_id}"')
    return (f'<div id="job-{job_id}" class="job"{live}><div class="progress" data-progress-table>'
            f'{progress_view(job, now)}</div><div data-controls>{controls_view(job, can_act)}</div>'
            f'{actions_list(job)}{journal_view(job)}</div>')
