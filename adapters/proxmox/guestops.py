"""Small guest actions both move paths share: wait out a lock, start/stop, run a task to its end.

Endpoints (pve-docs api-viewer, pve-container src/PVE/API2/LXC/Status.pm):
- POST /nodes/{node}/lxc/{vmid}/status/start -> UPID (vzstart; hastart for HA guests)
- POST /nodes/{node}/lxc/{vmid}/status/shutdown {timeout, forceStop} -> UPID (vzshutdown)
- GET  /nodes/{node}/lxc/{vmid}/config -> lock ("backup", "migrate", "create", ...)

Bandwidth: every call that copies data takes ``bwlimit`` in KiB/s, minimum 0, where 0 means
no limit: POST .../lxc/{vmid}/migrate and POST .../lxc with restore=1 ("Override I/O bandwidth
limit (in KiB/s)", type number; pve-container src/PVE/API2/LXC.pm migrate_vm, create_vm) and
POST /nodes/{node}/vzdump ("Limit I/O bandwidth (in KiB/s)", type integer; pve-manager
PVE/VZDump.pm confdesc). ferry sends the smaller of ``proxmox.bwlimit_kib`` and the move's
share of the node's budget (MoveSpec.bwlimit_kib), as an integer >= 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from adapters.base import JournalEntry, MoveSpec, PermanentError, StepContext
from adapters.proxmox import observe
from adapters.proxmox.client import Api
from adapters.proxmox.settings import ProxmoxSettings
from adapters.proxmox.tasks import wait_task


@dataclass
class MoveContext:
    """What one step of one move works with."""

    api: Api
    settings: ProxmoxSettings
    spec: MoveSpec
    ctx: StepContext
    memo: dict[str, bool] = field(default_factory=dict)

    @property
    def vmid(self) -> int:
        return int(self.spec.ct)

    @property
    def bwlimit_kib(self) -> int | None:
        """The API's ``bwlimit`` for this move (module doc); None sends none (the cluster's own
        datacenter or storage limit applies)."""
        caps = [cap for cap in (self.settings.bwlimit_kib, self.spec.bwlimit_kib) if cap]
        return min(caps) if caps else None

    def saw_source(self, running: bool) -> None:
        """Note whether the source runs, as seen before the move changed anything (preflight):
        in this process's memo, and as a fact the engine stores with the move, so that a ferry
        restarted mid-move still knows (``spec.source_running``)."""
        self.memo[f"running:{self.vmid}"] = running
        self.ctx.facts["source_running"] = running

    def source_ran(self, unknown: bool | None) -> bool | None:
        """Whether the source ran before the move: the stored fact, else what this process saw,
        else ``unknown`` (a move stored before facts were kept, resumed by a new process)."""
        if self.spec.source_running is not None:
            return self.spec.source_running
        return self.memo.get(f"running:{self.vmid}", unknown)

    def event(self, what: str, **detail: object) -> None:
        self.ctx.journal(JournalEntry(host=self.settings.host, what=what, status=None, duration_ms=0.0,
                                      kind="event", detail={"ct": self.spec.ct, **detail}))

    def run(self, upid: str) -> str:
        return wait_task(self.api, upid, self.ctx, timeout_s=self.settings.task_timeout_s,
                         poll_s=self.settings.poll_interval_s)

    def sleep(self) -> None:
        time.sleep(self.settings.poll_interval_s)


def wait_unlocked(mc: MoveContext, node: str, vmid: int) -> None:
    """Wait (bounded by ``lock_wait_s``) until the CT's config carries no lock. A backup holds
    ``lock: backup`` for its whole run; migrating then would fail inside the task anyway."""
    deadline = time.monotonic() + mc.settings.lock_wait_s
    lock = observe.config(mc.api, node, vmid).get("lock")
    if lock:
        mc.event("wait for lock", lock=lock, node=node, vmid=vmid)
    while lock:
        if time.monotonic() >= deadline:
            raise PermanentError(f"CT {vmid} on {node} is still locked ({lock}) after {mc.settings.lock_wait_s:g} s; "
                                 f"wait for that operation to end (or clear a stale lock with 'pct unlock {vmid}') "
                                 f"and run the move again")
        mc.sleep()
        lock = observe.config(mc.api, node, vmid).get("lock")


def ensure_power(mc: MoveContext, node: str, vmid: int, want: str) -> None:
    """Bring the CT to ``want`` ("running" | "stopped"), doing nothing if it already is."""
    place = observe.locate(mc.api, vmid)
    if place is None or place.node != node:
        raise PermanentError(f"CT {vmid} is not on {node}; cannot set it {want}")
    if place.status == want:
        return
    wait_unlocked(mc, node, vmid)
    if want == "running":
        upid = mc.api.post(f"/nodes/{node}/lxc/{vmid}/status/start")
    else:
        upid = mc.api.post(f"/nodes/{node}/lxc/{vmid}/status/shutdown",
                           timeout=mc.settings.shutdown_timeout_s, forceStop=1)
    mc.run(upid)
