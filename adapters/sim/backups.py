"""Backups and restores in the simulated fleet (adapters/restore.py's steps, on the world file).

The world keeps each container's archives under ``backups``::

    "backups": {"101": [{"archive": "backup:vzdump-lxc-101-….tar.zst", "taken_at": -21600.0,
                         "bytes": 2147483648, "checksum": "…@-21600", "storage": "backup"}]}

``taken_at`` is on the world's clock (simulated seconds; negative: before the world began). An
archive's data is the container's as it was then, so its checksum differs from the live data's:
a restored copy carries the archive's checksum, which is what verify checks. A dead node is
``online: false``; its copies are ``unknown`` while it is down and come back as they were (a copy
that ran comes back running, as ``onboot`` would start it) until cleanup keeps them stopped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from adapters.base import (
    Cancelled,
    Check,
    CleanupPending,
    Copy,
    JournalEntry,
    MoveSpec,
    Observation,
    PermanentError,
    StepContext,
)
from adapters.restore import STALE_MARK, Backup, RestoreSteps
from adapters.sim.world import WorldFile

if TYPE_CHECKING:
    from adapters.sim.backend import SimBackend

MB = 1024 * 1024
_SLICE_WALL_S = 0.05
_START_S = 3.0


def record_backup(world: WorldFile, ct: str, taken_at: float, *, storage: str = "backup") -> str:
    """Add an archive of ``ct`` taken at ``taken_at`` (world clock) with its disk as it is; its name."""
    with world.transaction() as w:
        data = w["containers"][ct]
        archive = f"{storage}:backup/vzdump-lxc-{ct}-{int(taken_at)}.tar.zst"
        w.setdefault("backups", {}).setdefault(ct, []).append(
            {"archive": archive, "taken_at": float(taken_at), "bytes": int(data["disk_gb"] * 1024**3 // 3),
             "checksum": f"{data['checksum']}@{int(taken_at)}", "storage": storage})
    return archive


def set_node_online(world: WorldFile, node: str, online: bool) -> None:
    """Kill (``False``) or bring back (``True``) a node; its copies stay as they were."""
    with world.transaction() as w:
        w["nodes"][node]["online"] = online


class SimRestore(RestoreSteps):
    """Restores in the simulated world of ``backend``."""

    def __init__(self, backend: SimBackend) -> None:
        self.backend, self.world = backend, backend.world

    def list_backups(self, node: str, cts: list[str]) -> list[Backup]:
        world = self.world.read()
        return [Backup(ct, b["archive"], float(b["taken_at"]), int(b["bytes"]), b.get("storage", ""))
                for ct in cts for b in world.get("backups", {}).get(ct, [])]

    def observe(self, spec: MoveSpec) -> Observation:
        world = self.world.read()
        return Observation(_copy(world, spec.ct, spec.source), _copy(world, spec.ct, spec.target))

    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        world = self.world.read()
        dst = world["nodes"].get(spec.target, {})
        checks = [Check("archive exists", _archive(world, spec) is not None,
                        f"no archive {spec.archive} of {spec.ct}"),
                  Check("target receives", bool(dst.get("online", True) and not dst.get("maintenance")),
                        f"{spec.target} is offline or in maintenance")]
        ctx.journal(JournalEntry(spec.target, ["sim-check-archive", str(spec.archive)], 0, 0.0))
        return checks

    def restore(self, spec: MoveSpec, ctx: StepContext) -> None:
        world = self.world.read()
        archive = _archive(world, spec)
        if archive is None:
            raise PermanentError(f"archive {spec.archive} of {spec.ct} is gone")
        if world["copies"][spec.ct].get(spec.target, {}).get("status") in ("stopped", "running"):
            return  # restored before a crash
        with self.world.transaction() as w:
            was = w["copies"][spec.ct].get(spec.source, {}).get("status", "running")
            w["copies"][spec.ct][spec.target] = {"status": "partial", "bytes": 0, "checksum": None,
                                                 "storage": spec.target_storage, "was": was}
        self._read_archive(spec, int(archive["bytes"]), float(world["nodes"][spec.target]["nic_mb_s"]), ctx)
        with self.world.transaction() as w:
            w["copies"][spec.ct][spec.target].update(status="stopped", bytes=int(archive["bytes"]),
                                                     checksum=archive["checksum"], restored_from=spec.archive)
        ctx.figures["bytes"] = ctx.figures.get("bytes", 0) + int(archive["bytes"])
        ctx.journal(JournalEntry(spec.target, ["vzrestore", str(spec.archive), spec.dest_ct], 0, 0.0,
                                 detail={"bytes": int(archive["bytes"])}))

    def _read_archive(self, spec: MoveSpec, nbytes: int, mb_s: float, ctx: StepContext) -> None:
        """Simulated time of reading the archive at the destination's NIC speed (bounded)."""
        wall = nbytes / (mb_s * MB) / self.backend.speedup
        deadline = time.monotonic() + wall
        while (left := deadline - time.monotonic()) > 0:
            if ctx.cancelled():
                raise Cancelled(f"restore of {spec.ct} cancelled")
            time.sleep(min(_SLICE_WALL_S, left))
            ctx.progress(int(nbytes * (1 - max(0.0, deadline - time.monotonic()) / wall)), nbytes)

    def start(self, spec: MoveSpec, ctx: StepContext) -> None:
        if not spec.fenced and not spec.fence_command:  # the saga fences first; never start without
            raise PermanentError(f"{spec.source} is not fenced: {spec.ct} is not started")
        with self.world.transaction() as w:
            copy = w["copies"][spec.ct].get(spec.target)
            if copy is None or copy["status"] == "partial":
                raise PermanentError(f"{spec.ct} is not restored on {spec.target}")
            want = _last_known_status(w, spec)
            started = copy["status"] != want
            copy["status"] = want
            w["home"][spec.ct] = spec.target
        if started:
            time.sleep(_START_S / self.backend.speedup)
            ctx.journal(JournalEntry(spec.target, ["sim-start", spec.dest_ct], 0, 0.0))

    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        world = self.world.read()
        target, archive = _copy(world, spec.ct, spec.target), _archive(world, spec) or {}
        want = _last_known_status(world, spec)
        if target.status != want:
            raise PermanentError(f"{spec.ct} is {target.status} on {spec.target}, expected {want}")
        if target.checksum != archive.get("checksum"):
            raise PermanentError(f"{spec.ct} on {spec.target}: data {target.checksum} is not the archive's")
        running = [n for n, c in world["copies"][spec.ct].items()
                   if c["status"] == "running" and world["nodes"][n].get("online", True)]
        if running != ([spec.target] if want == "running" else []):
            raise PermanentError(f"{spec.ct} runs on {running}, expected only {spec.target}")
        ctx.journal(JournalEntry(spec.target, ["sim-verify", spec.dest_ct], 0, 0.0))

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        with self.world.transaction() as w:
            if not w["nodes"][spec.source].get("online", True):
                raise CleanupPending(f"{spec.source} is still down: its copy of {spec.ct} is checked "
                                     "when it comes back")
            stale = w["copies"][spec.ct].get(spec.source)
            if stale is None:
                return
            was = stale["status"]
            stale.update(status="stopped" if was != "partial" else was, onboot=False, mark=STALE_MARK)
        if was == "running":
            ctx.journal(JournalEntry(spec.source, ["sim-stop", spec.ct], 0, 0.0))
        ctx.journal(JournalEntry(spec.source, ["sim-set", spec.ct, "--onboot", "no", "--description",
                                               STALE_MARK], 0, 0.0))
        ctx.figures["stale_copies"] = 1.0

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        with self.world.transaction() as w:
            removed = w["copies"][spec.ct].pop(spec.target, None) is not None
            if w["home"][spec.ct] == spec.target:
                w["home"][spec.ct] = spec.source
        if removed:
            ctx.journal(JournalEntry(spec.target, ["sim-destroy", spec.dest_ct], 0, 0.0))


def _last_known_status(world: dict[str, Any], spec: MoveSpec) -> str:
    """What the container was doing when its node died (recorded on the restored copy): a
    stopped one comes back stopped."""
    return "stopped" if world["copies"][spec.ct].get(spec.target, {}).get("was") == "stopped" else "running"


def _archive(world: dict[str, Any], spec: MoveSpec) -> dict[str, Any] | None:
    return next((b for b in world.get("backups", {}).get(spec.ct, []) if b["archive"] == spec.archive), None)


def _copy(world: dict[str, Any], ct: str, node: str) -> Copy:
    data = world["copies"].get(ct, {}).get(node)
    if not world["nodes"].get(node, {}).get("online", True):
        return Copy(node=node, ct=ct, status="unknown")
    if data is None:
        return Copy(node=node, ct=ct, status="absent")
    ips = tuple(world["containers"][ct].get("ips", [])) if data["status"] == "running" else ()
    return Copy(node=node, ct=ct, status=data["status"], ips=ips, checksum=data.get("checksum"))
