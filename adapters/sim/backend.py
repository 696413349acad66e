"""A simulated cluster that behaves like one: bytes take time, copies persist, faults happen.

Every step observes the world file first and does only what is missing (see adapters/base.py), so
a step re-run after a crash finishes the job instead of repeating it. Time is simulated: a copy of
B bytes over a link of R MB/s takes B/R simulated seconds, i.e. B/R/speedup wall seconds; a node's
NIC is shared by the transfers running through it. Faults come from the world's ``faults`` list
(each fires ``remaining`` times, across processes) and from a seeded ``fault_rate`` (faults.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from adapters.base import (
    Backend,
    Cancelled,
    Check,
    Copy,
    JournalEntry,
    MoveSpec,
    Observation,
    PermanentError,
    StepContext,
    TransientError,
)
from adapters.clock import VirtualClock
from adapters.sim.faults import fault_error, take_fault
from adapters.sim.world import AcceleratedClock, WorldFile
from fleet.model import Inventory
from fleet.snapshot import parse_inventory

MB = 1024 * 1024
GB = 1024 * MB
#: Wall seconds per progress slice of a simulated transfer.
_SLICE_WALL_S = 0.05
#: Stop pre-sync rounds once the delta is this small (bytes) or stops shrinking; at most this many.
_DELTA_DONE_BYTES = 64 * MB
_MAX_PRESYNC_ROUNDS = 4
#: Timing of container operations, simulated seconds.
_STOP_S, _START_S, _FREEZE_S = 5.0, 3.0, 0.5


class SimBackend(Backend):
    """The simulated fleet whose state lives in ``world_path``."""

    name = "sim"
    #: The simulated world keys each container by its id and holds no addresses per copy.
    refuses = {
        "target_ct": "the simulated backend cannot renumber a container",
        "ips": "the simulated backend cannot readdress a container",
        "gateway": "the simulated backend cannot readdress a container",
        "hostname": "the simulated backend cannot rename a container",
        "ports": "the simulated backend holds no client connections",
        "backup": "the simulated backend has no backups",
    }

    def __init__(self, world_path: str) -> None:
        self.world = WorldFile(world_path)
        self._active = Counter[str]()  # "out:n1" / "in:n2" -> transfers running in this process
        self._active_lock = threading.Lock()
        info = self.world.read()
        self.speedup = float(info["speedup"])
        self.seed = int(info["seed"])
        #: Simulated time: accelerated wall time, or a :class:`VirtualClock` (bench/engine.py)
        self.clock: AcceleratedClock | VirtualClock = AcceleratedClock(info["clock"], self.speedup)
        # Faults are part of the world from its creation (sim.faults / sim.fault_rate): a world
        # made without any never fires one, so its steps need not read the world to find out.
        self._faulty = bool(info.get("faults") or info.get("fault_rate"))

    # -- reading -----------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def discover(self) -> Inventory:
        world = self.world.read()
        containers = []
        for ct, data in world["containers"].items():
            node = world["home"][ct]
            copy = world["copies"][ct].get(node, {})
            status = "running" if copy.get("status") == "running" else "stopped"
            fields = {k: v for k, v in data.items() if k != "checksum"}
            if copy.get("storage"):  # moved onto another storage id
                fields["storage"] = copy["storage"]
            containers.append({**fields, "node": node, "status": status})
        nodes = []
        for name, node in world["nodes"].items():
            node = dict(node)
            node["storage"] = _storage_usage(world, name)
            nodes.append(node)
        return parse_inventory(
            {"version": 1, "nodes": nodes, "containers": containers, "rules": world["rules"]},
            source="sim world",
        )

    def observe(self, spec: MoveSpec) -> Observation:
        world = self.world.read()
        return Observation(_copy(world, spec.ct, spec.source), _copy(world, spec.ct, spec.target))

    def restores(self) -> Any:
        from adapters.sim.backups import SimRestore  # restores from backups (adapters/restore.py)
        return SimRestore(self)

    # -- steps -------------------------------------------------------------------------------
    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        world = self.world.read()
        self._fault(spec, "preflight", ctx)
        ct = world["containers"].get(spec.ct)
        src, dst = world["nodes"].get(spec.source), world["nodes"].get(spec.target)
        checks = [
            Check("container exists", ct is not None, f"no container {spec.ct} in the world"),
            Check("source online", bool(src and src.get("online", True)), f"{spec.source} is offline"),
            Check("target receives", bool(dst and dst.get("online", True) and not dst.get("maintenance")),
                  f"{spec.target} is offline or in maintenance"),
        ]
        if ct is None or src is None or dst is None:
            return checks
        checks.append(Check("same platform", src["platform"] == dst["platform"],
                            f"{spec.source} is {src['platform']}, {spec.target} is {dst['platform']}"))
        holder = world["locks"].get(spec.ct)
        owner = spec.owner
        checks.append(Check("not locked", holder in (None, owner), f"locked by {holder}"))
        storage = spec.target_storage or _storage_of(world, spec.ct, spec.source)
        free = _storage_usage(world, spec.target).get(storage, {})
        need = 0.0 if free.get("shared") else ct["disk_gb"]
        have = free.get("total_gb", 0.0) - free.get("used_gb", 0.0)
        if _copy(world, spec.ct, spec.target).status != "absent":
            have += ct["disk_gb"]  # our own partial copy already counts as used
        checks.append(Check("target disk space", have >= need,
                            f"needs {need:.0f} GB on {spec.target}:{storage}, {have:.0f} GB free"))
        if spec.method == "live":
            live_ok = src.get("kernel") == dst.get("kernel")
            checks.append(Check("live compatible", live_ok,
                                f"kernels differ ({src.get('kernel')} vs {dst.get('kernel')}): use restart",
                                blocks="live"))
        ctx.journal(JournalEntry(spec.source, ["sim-check", spec.ct, spec.target], 0, 0.0))
        return checks

    def prepare(self, spec: MoveSpec, ctx: StepContext) -> None:
        self._fault(spec, "prepare", ctx)
        owner = spec.owner
        with self.world.transaction() as world:
            holder = world["locks"].get(spec.ct)
            if holder not in (None, owner):
                raise TransientError(f"container {spec.ct} is locked by {holder}")
            world["locks"][spec.ct] = owner
            copies = world["copies"][spec.ct]
            was = copies.get(spec.source, {}).get("status", "running")
            world.setdefault("moving", {}).setdefault(spec.ct, {"source": spec.source, "status": was})
            created = spec.target not in copies
            if created:
                copies[spec.target] = {"status": "partial", "bytes": 0, "checksum": None,
                                       "storage": spec.target_storage or copies.get(spec.source, {}).get("storage")}
        if created:
            ctx.journal(JournalEntry(spec.target, ["sim-create", spec.dest_ct], 0, 0.0))

    def presync(self, spec: MoveSpec, ctx: StepContext) -> None:
        world = self.world.read()
        target = world["copies"][spec.ct].get(spec.target, {})
        if target.get("status") in ("running", "stopped") or spec.method == "dump":
            return  # already complete, or the dump path copies everything at cutover
        ct = world["containers"][spec.ct]
        total = self._disk_bytes(world, spec)
        todo = max(0, total - int(target.get("bytes", 0)))
        dirty_rate = ct.get("dirty_mb_per_s", 0.0) * MB
        copied = 0
        for _round in range(_MAX_PRESYNC_ROUNDS):
            seconds = self._transfer(spec, todo, ctx, fault_step="presync")
            copied += todo
            self._record_bytes(spec, total)
            delta = min(total, int(dirty_rate * seconds))
            if delta <= _DELTA_DONE_BYTES or delta >= todo:
                break
            todo = delta
        ctx.figures["bytes"] = ctx.figures.get("bytes", 0) + copied

    def cutover(self, spec: MoveSpec, ctx: StepContext) -> None:
        state = self.observe(spec)
        world = self.world.read()
        if world["home"][spec.ct] == spec.target and state.source.status != "running":
            return  # done before a crash
        ct = world["containers"][spec.ct]
        stopped_s, link_before = 0.0, ctx.figures.get("transfer_s", 0.0)
        # OpenVZ's live move checkpoints the memory; Proxmox's "live" is a restart migration after
        # the pre-copy (adapters/proxmox/migrate.py): stop, copy the delta, start.
        if spec.method == "live" and world["nodes"][spec.source]["platform"] == "openvz":
            self._set_status(spec, spec.source, "stopped", ctx, argv=["sim-freeze", spec.ct])
            rest = int(ct.get("memory_used_mb", 0) * MB + ct.get("dirty_mb_per_s", 0.0) * MB * 2)
            extra = _FREEZE_S
        else:
            self._set_status(spec, spec.source, "stopped", ctx, argv=["sim-stop", spec.ct])
            self._sleep(_STOP_S, ctx)
            stopped_s = _STOP_S
            full = spec.method == "dump" or state.target.status == "partial" and not self._synced(spec)
            rest = self._disk_bytes(world, spec) if full else int(ct.get("dirty_mb_per_s", 0.0) * MB * 10)
            extra = _START_S
        self._transfer(spec, rest, ctx, fault_step="cutover")
        ctx.figures["bytes"] = ctx.figures.get("bytes", 0) + rest
        self._fault(spec, "start", ctx)
        self._sleep(extra, ctx)
        with self.world.transaction() as w:
            copy = w["copies"][spec.ct][spec.target]
            copy.update(status=_original_status(w, spec.ct), bytes=self._disk_bytes(w, spec),
                        checksum=ct["checksum"])
            w["home"][spec.ct] = spec.target
        ctx.journal(JournalEntry(spec.target, ["sim-start", spec.dest_ct], 0, 0.0))
        # The simulated actions' time (stop, copy, start), as transfer_s counts the link's: the host's
        # milliseconds around them, times the speedup, are no downtime. A stopped container served none.
        out_s = stopped_s + ctx.figures["transfer_s"] - link_before + extra
        ctx.figures["downtime_s"] = out_s if _original_status(world, spec.ct) == "running" else 0.0

    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        self._fault(spec, "verify", ctx)
        world = self.world.read()
        target = _copy(world, spec.ct, spec.target)
        want = world["containers"][spec.ct]["checksum"]
        expected = _original_status(world, spec.ct)
        if target.status != expected:
            raise PermanentError(f"{spec.ct} is {target.status} on {spec.target}, expected {expected}")
        if target.checksum != want:
            raise PermanentError(f"{spec.ct} on {spec.target}: data checksum {target.checksum} != {want}")
        running = [n for n, c in world["copies"][spec.ct].items() if c["status"] == "running"]
        if running != ([spec.target] if expected == "running" else []):
            raise PermanentError(f"{spec.ct} runs on {running}, expected only {spec.target}")
        ctx.journal(JournalEntry(spec.target, ["sim-verify", spec.dest_ct], 0, 0.0))

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        with self.world.transaction() as world:  # the lock lives with the (verified) destination
            if world["locks"].get(spec.ct) == spec.owner:
                world["locks"].pop(spec.ct)
        self._fault(spec, "cleanup", ctx)
        with self.world.transaction() as world:
            copies = world["copies"][spec.ct]
            verified = world["home"][spec.ct] == spec.target and \
                copies.get(spec.target, {}).get("checksum") == world["containers"][spec.ct]["checksum"]
            retired = verified and copies.pop(spec.source, None) is not None  # never before verified
            world.get("moving", {}).pop(spec.ct, None)
        if retired:
            ctx.journal(JournalEntry(spec.source, ["sim-destroy", spec.ct], 0, 0.0))

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        self._fault(spec, "rollback", ctx)
        with self.world.transaction() as world:
            copies = world["copies"][spec.ct]
            source = copies.get(spec.source)
            if source is None:
                raise PermanentError(f"{spec.ct}: source copy on {spec.source} is gone; the copy on "
                                     f"{spec.target} is kept as the only one")
            removed = copies.pop(spec.target, None) is not None  # one transaction: never two running
            want = _original_status(world, spec.ct)
            restarted = source["status"] != want
            source["status"] = want
            world["home"][spec.ct] = spec.source
            world.get("moving", {}).pop(spec.ct, None)
            if world["locks"].get(spec.ct) == spec.owner:
                world["locks"].pop(spec.ct)
        if removed:
            ctx.journal(JournalEntry(spec.target, ["sim-destroy", spec.dest_ct], 0, 0.0))
        if restarted:
            ctx.journal(JournalEntry(spec.source, ["sim-start", spec.ct], 0, 0.0))

    # -- mechanics ---------------------------------------------------------------------------
    def _disk_bytes(self, world: dict[str, Any], spec: MoveSpec) -> int:
        ct = world["containers"][spec.ct]
        here = _storage_of(world, spec.ct, spec.source)
        storage = _storage_usage(world, spec.source).get(here, {})
        stays = spec.target_storage in (None, here)  # a shared storage id the disk keeps
        return 0 if storage.get("shared") and stays else int(ct["disk_gb"] * GB)

    def _synced(self, spec: MoveSpec) -> bool:
        world = self.world.read()
        target = world["copies"][spec.ct].get(spec.target, {})
        return int(target.get("bytes", 0)) >= self._disk_bytes(world, spec)

    def _record_bytes(self, spec: MoveSpec, nbytes: int) -> None:
        with self.world.transaction() as world:
            copy = world["copies"][spec.ct].get(spec.target)
            if copy is not None and copy["status"] == "partial":
                copy["bytes"] = nbytes

    def _set_status(self, spec: MoveSpec, node: str, status: str, ctx: StepContext, argv: list[str]) -> None:
        """Observe, then act only if needed: a stop re-run after a crash is not journaled twice."""
        with self.world.transaction() as world:
            copy = world["copies"][spec.ct].get(node)
            if copy is None or copy["status"] == status:
                return
            copy["status"] = status
        ctx.journal(JournalEntry(node, argv, 0, 0.0))

    def _rate(self, spec: MoveSpec, world: dict[str, Any]) -> float:
        """Bytes per simulated second for one transfer now: the NICs are shared."""
        with self._active_lock:
            out = max(1, self._active[f"out:{spec.source}"])
            into = max(1, self._active[f"in:{spec.target}"])
        nodes = world["nodes"]
        factor = world.get("link_factor", {}).get(f"{spec.source}->{spec.target}", 1.0)
        mb_s = min(nodes[spec.source]["nic_mb_s"] / out, nodes[spec.target]["nic_mb_s"] / into) * factor
        cap = spec.bwlimit_mb_s  # the move's share of the node's budget (rsync --bwlimit)
        return max(1.0, min(mb_s, cap) if cap else mb_s) * MB

    def _transfer(self, spec: MoveSpec, nbytes: int, ctx: StepContext, fault_step: str) -> float:
        """Move ``nbytes`` over the link; returns simulated seconds taken. The ``transfer_s``
        figure counts only the link's time for the bytes (each slice's bytes at that slice's
        rate), not the host's: a busy test machine must not make the simulated link look slow."""
        keys = (f"out:{spec.source}", f"in:{spec.target}")
        with self._active_lock:
            self._active.update(keys)
        started, sim_started = time.monotonic(), self.clock.now()
        slice_s = _SLICE_WALL_S * self.speedup
        try:
            world = self.world.read()
            done, half_fired, last, link_s = 0, False, sim_started, 0.0
            while done < nbytes:
                if ctx.cancelled():
                    raise Cancelled(f"move of {spec.ct} cancelled during copy")
                rate = self._rate(spec, world)  # bytes per simulated second, for this slice
                self.clock.sleep(max(0.0, min(slice_s, (nbytes - done) / rate - (self.clock.now() - last))))
                now = self.clock.now()  # all time since the last slice counts, busy or asleep
                sent = min(nbytes - done, int(rate * (now - last)) + 1)
                done, last, link_s = done + sent, now, link_s + sent / rate
                ctx.progress(done, nbytes)
                if not half_fired and done * 2 >= nbytes:
                    half_fired = True
                    self._fault(spec, f"{fault_step}-copy", ctx)
        finally:
            with self._active_lock:
                self._active.subtract(keys)
        ctx.journal(JournalEntry(spec.source, [
            "rsync", "-aH", "--numeric-ids", f"/var/lib/vz/private/{spec.ct}/",
            f"{spec.target}:/var/lib/vz/private/{spec.dest_ct}/"], 0,
            (time.monotonic() - started) * 1000, detail={"bytes": nbytes}))
        ctx.figures["transfer_s"] = ctx.figures.get("transfer_s", 0.0) + link_s
        return self.clock.now() - sim_started

    def _sleep(self, sim_seconds: float, ctx: StepContext) -> None:
        self.clock.sleep(sim_seconds)

    def _fault(self, spec: MoveSpec, step: str, ctx: StepContext) -> None:
        """Raise the fault the world has scheduled for this step of this move, if any."""
        if not self._faulty:
            return
        with self.world.transaction() as world:
            kind = take_fault(world, spec, step)
        if kind is None:
            return
        ctx.journal(JournalEntry(spec.target, ["sim-fault", step, kind], 1, 0.0, kind="event"))
        raise fault_error(kind, spec, step)


def _original_status(world: dict[str, Any], ct: str) -> str:
    """The status the container had before ferry touched it; a stopped one stays stopped."""
    return world.get("moving", {}).get(ct, {}).get("status", "running")


def _copy(world: dict[str, Any], ct: str, node: str) -> Copy:
    data = world["copies"].get(ct, {}).get(node)
    if data is None:
        return Copy(node=node, ct=ct, status="absent")
    ips = tuple(world["containers"][ct].get("ips", [])) if data["status"] == "running" else ()
    return Copy(node=node, ct=ct, status=data["status"], ips=ips, checksum=data.get("checksum"),
                locked_by=world["locks"].get(ct))


def _storage_of(world: dict[str, Any], ct: str, node: str) -> str | None:
    """The storage id of ``ct``'s copy on ``node``: where a move put it, else the container's."""
    copy = world["copies"].get(ct, {}).get(node) or {}
    return copy.get("storage") or world["containers"][ct].get("storage")


def _storage_usage(world: dict[str, Any], node: str) -> dict[str, dict[str, Any]]:
    """Storage of ``node`` with used_gb = the node's own base usage + the copies it holds."""
    out = {}
    for sid, info in world["nodes"][node].get("storage", {}).items():
        used = float(info.get("base_used_gb", info.get("used_gb", 0.0)))
        if not info.get("shared"):
            for ct, copies in world["copies"].items():
                data = world["containers"][ct]
                if node in copies and _storage_of(world, ct, node) == sid:
                    used += copies[node].get("bytes", 0) / GB if copies[node]["status"] == "partial" \
                        else data["disk_gb"]
        out[sid] = {**info, "used_gb": round(used, 3)}
    return out
