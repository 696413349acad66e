"""The simulated world's state: one JSON file, changed only inside locked transactions.

The world outlives any ferry process, exactly as a real cluster would: kill ferry mid-move and the
file says where every copy of every container is. Each transaction takes an exclusive ``flock``
(which also serialises threads, since every transaction opens its own descriptor), reads the
file, lets the caller change the dict, and replaces the file atomically (write, rename).

Layout (version 1)::

    {"version": 1, "seed": 7, "speedup": 200.0, "clock": {"wall": 1.7e9, "sim": 0.0},
     "nodes": {"n1": {<snapshot node fields>, "nic_mb_s": 1250.0}},
     "containers": {"101": {<snapshot container fields but "node">, "checksum": "…"}},
     "copies": {"101": {"n1": {"status": "running", "bytes": 4294967296, "checksum": "…"}}},
     "home": {"101": "n1"},            # which copy is the container (discover reports it)
     "rules": {…}, "locks": {"101": "job-3"},
     "faults": [{"kind": "fail", "step": "cutover", "ct": "101", "remaining": 1}],
     "fault_rate": 0.0, "link_factor": {"n1->n2": 0.1}}
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fleet.model import Inventory

WORLD_VERSION = 1
DEFAULT_NIC_MB_S = 1250.0  # 10 GbE


def data_checksum(ct: str, seed: int) -> str:
    """A container's data identity; a copy is complete when its checksum equals the source's."""
    return hashlib.sha256(f"{seed}:{ct}".encode()).hexdigest()[:16]


def world_from_inventory(
    inv: Inventory, *, seed: int = 7, speedup: float = 200.0, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build a fresh world from a snapshot. Sim-only node keys (``nic_mb_s``) ride along as the
    snapshot's extra keys; ``extra`` adds top-level keys (faults, fault_rate, link_factor)."""
    nodes = {}
    for node in inv.nodes:
        data = node.model_dump(mode="json")
        data.setdefault("nic_mb_s", DEFAULT_NIC_MB_S)
        for sid, info in data["storage"].items():
            # The snapshot's used_gb includes the containers' disks; the world counts them itself.
            mine = sum(c.disk_gb for c in inv.on_node(node.name) if c.storage == sid)
            info["base_used_gb"] = 0.0 if info["shared"] else max(0.0, info["used_gb"] - mine)
        nodes[node.name] = data
    containers, copies, home = {}, {}, {}
    for ct in inv.containers:
        data = ct.model_dump(mode="json")
        node = data.pop("node")
        data["checksum"] = data_checksum(ct.id, seed)
        containers[ct.id] = data
        copies[ct.id] = {
            node: {
                "status": ct.status if ct.status in ("running", "stopped") else "stopped",
                "bytes": int(ct.disk_gb * 1024**3),
                "checksum": data["checksum"],
            }
        }
        home[ct.id] = node
    world = {
        "version": WORLD_VERSION, "seed": seed, "speedup": speedup,
        "clock": {"wall": time.time(), "sim": 0.0},
        "nodes": nodes, "containers": containers, "copies": copies, "home": home,
        "rules": inv.rules.model_dump(mode="json"), "locks": {},
        "faults": [], "fault_rate": 0.0, "link_factor": {},
    }
    world.update(extra or {})
    return world


class WorldFile:
    """Locked, atomic access to the world file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        # The last world this process read or wrote, and the file's identity then: reading an
        # unchanged file again costs a stat, not a parse (another process's write changes the
        # identity: os.replace gives the file a new inode).
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def create(self, world: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._write(world)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _write(self, world: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # write + rename is atomic against a killed process (kill -9 loses no page cache), which
        # is what the simulated world must survive; it skips fsync, which only power loss needs.
        # 0600 like every file of ferry's state: the world holds the fleet's addresses and names.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(world, separators=(",", ":")))  # dumps: the C encoder, 50x json.dump
        os.replace(tmp, self.path)
        self._cache = (self._identity(), world)

    def _identity(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _load(self) -> dict[str, Any]:
        """The current world (call with the lock held)."""
        identity = self._identity()
        if self._cache is not None and self._cache[0] == identity:
            return self._cache[1]
        world = json.loads(self.path.read_text(encoding="utf-8"))
        self._cache = (identity, world)
        return world

    def read(self) -> dict[str, Any]:
        """The world as it is now. Callers only look: it may be the object this process shares."""
        with self._locked():
            return self._load()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Yield the world for changing; it is written back only if the block ends normally."""
        with self._locked():
            world = self._load()
            try:
                yield world
            except BaseException:
                self._cache = None  # the block may have changed it half-way: read the file again
                raise
            self._write(world)


def sim_now(world: dict[str, Any]) -> float:
    """Simulated seconds since the world began: accelerated wall time."""
    clock = world["clock"]
    return clock["sim"] + (time.time() - clock["wall"]) * world["speedup"]


class AcceleratedClock:
    """The simulator's default time: the world's clock, ``speedup`` simulated seconds per wall
    second (shared by every process that opens the same world)."""

    def __init__(self, world_clock: dict[str, float], speedup: float) -> None:
        self._clock = dict(world_clock)
        self.speedup = speedup

    def now(self) -> float:
        return sim_now({"clock": self._clock, "speedup": self.speedup})

    def sleep(self, sim_seconds: float) -> None:
        time.sleep(sim_seconds / self.speedup)
