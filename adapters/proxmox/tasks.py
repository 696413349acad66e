"""Following Proxmox tasks by UPID, and judging them the way Proxmox does.

A UPID names the node that runs the task (pve-common PVE::Tools::upid_decode:
``UPID:node:pid:pstart:starttime:type:id:user:``), so ferry polls
``GET /nodes/{node}/tasks/{upid}/status`` on that node (pve-docs api-viewer, "nodes/{node}/tasks/
{upid}/status": ``status`` running|stopped, ``exitstatus`` once stopped) until it stops, bounded.
Success is pve-common's ``upid_status_is_error`` negated: "OK" or "WARNINGS: n" (the task
finished, with n warnings logged); any other text is the error.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from adapters.base import Cancelled, JournalEntry, PermanentError, StepContext, TransientError
from adapters.proxmox.client import Api

_UPID_RE = re.compile(r"^UPID:(?P<node>[a-zA-Z0-9\-.]+):(?P<pid>[0-9A-Fa-f]{8}):(?P<pstart>[0-9A-Fa-f]{8,9}):"
                      r"(?P<starttime>[0-9A-Fa-f]{8}):(?P<type>[^:\s]+):(?P<id>[^:\s]*):(?P<user>[^:\s]+):$")


@dataclass(frozen=True)
class Upid:
    node: str
    type: str
    id: str
    user: str
    starttime: int


def parse_upid(upid: str) -> Upid:
    match = _UPID_RE.match(upid)
    if not match:
        raise PermanentError(f"not a Proxmox task id: {upid[:80]!r}")
    return Upid(match["node"], match["type"], match["id"], match["user"], int(match["starttime"], 16))


def exit_ok(exitstatus: str | None) -> bool:
    """pve-common PVE::Tools::upid_status_is_error, negated: OK and WARNINGS: n are success."""
    return exitstatus == "OK" or bool(exitstatus and re.fullmatch(r"WARNINGS: \d+", exitstatus))


class TaskFailed(PermanentError):
    """A task stopped with an error exit status; ``exitstatus`` is Proxmox's text."""

    def __init__(self, line: str, upid: str, exitstatus: str) -> None:
        super().__init__(line)
        self.upid, self.exitstatus = upid, exitstatus


def log_tail(api: Api, upid: str, lines: int = 5) -> list[str]:
    node = parse_upid(upid).node
    try:
        rows = api.get(f"/nodes/{node}/tasks/{upid}/log", start=0, limit=500)
    except (PermanentError, TransientError):
        return []
    return [row.get("t", "") for row in rows][-lines:]


def wait_task(api: Api, upid: str, ctx: StepContext, *, timeout_s: float, poll_s: float) -> str:
    """Poll until the task stops; return its exit status when OK/WARNINGS, else raise TaskFailed."""
    info = parse_upid(upid)
    deadline = time.monotonic() + timeout_s
    while True:
        status = api.get(f"/nodes/{info.node}/tasks/{upid}/status")
        if status.get("status") == "stopped":
            break
        if time.monotonic() >= deadline:
            raise TransientError(f"task {upid} still running after {timeout_s:g} s; ferry will follow it again")
        if ctx.cancelled():
            raise Cancelled(f"cancelled while task {upid} runs on {info.node}; it continues there")
        time.sleep(poll_s)
    exitstatus = status.get("exitstatus") or "unexpected status"
    ctx.journal(JournalEntry(host=info.node, what=f"task {info.type} {info.id}", status=None, duration_ms=0.0,
                             kind="event", detail={"upid": upid, "exitstatus": exitstatus}))
    if exit_ok(exitstatus):
        return exitstatus
    tail = [t for t in log_tail(api, upid) if not t.startswith("TASK ERROR")]
    raise TaskFailed(f"task {info.type} of {info.id} on {info.node} failed: {exitstatus}"
                     + (f" (log: {' | '.join(tail[-2:])})" if tail else ""), upid, exitstatus)
