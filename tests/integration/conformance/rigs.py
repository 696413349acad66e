"""One rig per backend: the backend ferry drives, the world seen from outside, and its fault knobs.

A rig hands out fresh moves (:meth:`Rig.order`), arms a permanent failure of one step right
before the saga calls it (:meth:`Rig.arm`, through the double's or the world's own knob), and
names the journal entries that change the world (:meth:`Rig.destructive`) so that a test can
check that none was repeated. The lab's rig lives in lab_rig.py (it needs root).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from adapters import sim
from adapters.base import Backend, JournalEntry
from adapters.proxmox import create_backend as proxmox_backend
from tests.doubles.pvedouble.fixtures import settings_for
from tests.doubles.pvedouble.server import PveDouble
from tests.doubles.pvedouble.world import World as PveWorld
from tests.integration.conformance.harness import MoveOrder
from tests.integration.conformance.invariants import Seen, World

#: Steps the saga calls before the destination is verified, plus verify itself.
STEPS_TO_VERIFY = ("preflight", "prepare", "presync", "cutover", "verify")
ALL_STEPS = (*STEPS_TO_VERIFY, "cleanup")


class Rig(Protocol):
    name: str
    backend: Backend
    world: World
    #: How often the invariant watcher looks while a step runs (None: only at boundaries).
    watch_interval_s: float | None
    #: Steps after whose action a crash of the engine is simulated.
    crash_steps: tuple[str, ...]

    def order(self) -> MoveOrder:
        """A new move of a running container that nothing else touches."""

    def arm(self, step: str, order: MoveOrder) -> None:
        """Make the next call of ``step`` for ``order`` fail permanently (``cleanup``: fail)."""

    def restarted(self) -> Backend:
        """A new backend on the same world, as a restarted ferry builds it: nothing the crashed
        one kept in memory survives. It replaces :attr:`backend`."""

    def stop(self, order: MoveOrder) -> None:
        """Stop the order's container before its move (a customer's stopped VPS)."""

    def heal(self, order: MoveOrder) -> None:
        """Undo whatever :meth:`arm` left in the world, so a later retry can succeed."""

    def destructive(self, entry: JournalEntry) -> str | None:
        """A key naming the change ``entry`` made to the world, or None if it only looked."""


# -------------------------------------------------------------------------------------- sim
class SimWorldView:
    def __init__(self, backend: sim.SimBackend) -> None:
        self.file = backend.world

    def copies(self, order: MoveOrder) -> list[Seen]:
        world = self.file.read()
        ips = tuple(world["containers"][order.ct].get("ips", []))
        return [Seen(node, order.ct, copy["status"] == "running", ips)
                for node, copy in world["copies"][order.ct].items()]

    def running_ips(self) -> list[tuple[str, str]]:
        world = self.file.read()
        return [(ip, f"{node}/{ct}") for ct, copies in world["copies"].items()
                for node, copy in copies.items() if copy["status"] == "running"
                for ip in world["containers"][ct].get("ips", [])]

    def source_data(self, order: MoveOrder) -> bool:
        return order.source in self.file.read()["copies"][order.ct]


SIM_FAULT_STEP = {"presync": "presync-copy", "cutover": "cutover-copy"}
SIM_DESTRUCTIVE = {"sim-create", "sim-stop", "sim-freeze", "sim-start", "sim-destroy"}


@dataclass
class SimRig:
    """The simulated fleet (tests/doubles/fleets/small.yaml), moves from node a to node b."""

    directory: Path
    name: str = "sim"
    watch_interval_s: float | None = 0.002
    crash_steps: tuple[str, ...] = ALL_STEPS
    _cts: itertools.cycle = field(default_factory=lambda: itertools.cycle(["101", "102", "104"]))

    def __post_init__(self) -> None:
        from tests.conftest import SMALL_FLEET

        # A placeholder fault (spent) makes the world consult its fault list on every step.
        spent = [{"kind": "fail", "step": "never", "remaining": 0}]
        self.settings = {"world_file": str(self.directory / "world.json"), "fleet_file": str(SMALL_FLEET),
                         "speedup": 20000.0, "faults": spent}
        self.backend = sim.create_backend(self.settings)
        self.world = SimWorldView(self.backend)

    def restarted(self) -> Backend:
        self.backend = sim.create_backend(self.settings)  # the world file already exists: kept
        return self.backend

    def stop(self, order: MoveOrder) -> None:
        with self.backend.world.transaction() as world:
            world["copies"][order.ct][order.source]["status"] = "stopped"

    def order(self) -> MoveOrder:
        return MoveOrder(next(self._cts), "a", "b")

    def arm(self, step: str, order: MoveOrder) -> None:
        with self.backend.world.transaction() as world:
            world["faults"].append({"kind": "fail", "step": SIM_FAULT_STEP.get(step, step),
                                    "ct": order.ct, "remaining": 1})

    def heal(self, order: MoveOrder) -> None:
        return None  # sim faults are one-shot

    def destructive(self, entry: JournalEntry) -> str | None:
        what = entry.what
        if isinstance(what, list) and what and what[0] in SIM_DESTRUCTIVE:
            return f"{entry.host}: {' '.join(what)}"
        return None


# -------------------------------------------------------------------------------- proxmox
class PveWorldView:
    def __init__(self, world: PveWorld) -> None:
        self.world = world

    def copies(self, order: MoveOrder) -> list[Seen]:
        mark = f"ferry-from-{order.ct}"
        with self.world.lock:
            return [Seen(g.node, str(g.vmid), g.status == "running", tuple(self.world.ips_of(g)))
                    for g in self.world.guests.values()
                    if str(g.vmid) in (order.ct, order.dest_ct) or mark in g.tags]

    def running_ips(self) -> list[tuple[str, str]]:
        with self.world.lock:
            return [(ip, f"{g.node}/{g.vmid}") for g in self.world.guests.values()
                    if g.status == "running" for ip in self.world.ips_of(g)]

    def source_data(self, order: MoveOrder) -> bool:
        with self.world.lock:  # pct migrate moves the CT: it exists, on one node or the other
            return int(order.ct) in self.world.guests


@dataclass
class PveRig:
    """The Proxmox API double over real HTTPS (small fleet), moves from pve1."""

    double: PveDouble
    name: str = "proxmox"
    watch_interval_s: float | None = 0.005
    crash_steps: tuple[str, ...] = ALL_STEPS
    _cts: itertools.cycle = field(default_factory=lambda: itertools.cycle([("104", "pve2"), ("101", "pve3")]))

    def __post_init__(self) -> None:
        self.backend = proxmox_backend(settings_for(self.double))
        self.world = PveWorldView(self.double.world)

    def restarted(self) -> Backend:
        self.backend = proxmox_backend(settings_for(self.double))
        return self.backend

    def stop(self, order: MoveOrder) -> None:
        with self.double.world.lock:
            self.double.world.guests[int(order.ct)].status = "stopped"

    def order(self) -> MoveOrder:
        ct, target = next(self._cts)
        return MoveOrder(ct, "pve1", target)

    def arm(self, step: str, order: MoveOrder) -> None:
        """The next API request fails with HTTP 500 (pve-http-server's answer to a failed call)."""
        with self.double.world.lock:
            self.double.world.faults.http_status = 500
            self.double.world.faults.http_errors = 1

    def heal(self, order: MoveOrder) -> None:
        with self.double.world.lock:
            self.double.world.faults.http_errors = 0

    def destructive(self, entry: JournalEntry) -> str | None:
        what = entry.what
        if entry.kind != "api" or not isinstance(what, str) or what.startswith("GET "):
            return None
        if what.endswith("/schedule_now"):  # one more replication run: a copy, safe to repeat
            return None
        return f"{what} -> {entry.status}"
