"""The simulated fleet: a world file, a time model and fault injection.

    fleet file (snapshot YAML/JSON + sim keys) --world_from_inventory--> world file (JSON)
                                                                              |
    engine --steps--> SimBackend --locked transactions--> world file <--------+
                          \\-- faults.take_fault: the fault a step raises, if any

Used by ``ferry demo``, dry-runs, tests and benchmarks. Settings (the ``[sim]`` config table):

- ``world_file``: where the world lives (required). Created from ``fleet_file`` when missing.
- ``fleet_file``: the snapshot the world starts from.
- ``speedup``: simulated seconds per wall second (default 200).
- ``seed``: seeds data checksums and random faults (default 7).
- ``faults``: a list of ``{kind, step, ct?, method?, target?, remaining?}`` injected at creation;
  ``fault_rate``: chance of a transient fault per step; ``link_factor``: ``{"a->b": 0.1}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.sim.backend import SimBackend
from adapters.sim.world import WorldFile, world_from_inventory
from fleet.errors import InputError
from fleet.snapshot import load_inventory

__all__ = ["SimBackend", "create_backend", "create_world"]


def create_world(settings: Mapping[str, Any], *, replace: bool = False) -> Path:
    """Create the world file from the fleet file (unless it exists and ``replace`` is false)."""
    world_file = settings.get("world_file")
    if not world_file:
        raise InputError("sim.world_file", world_file, "is required for the sim backend")
    world = WorldFile(world_file)
    if world.exists() and not replace:
        return world.path
    fleet_file = settings.get("fleet_file")
    if not fleet_file:
        raise InputError("sim.fleet_file", fleet_file, f"needed to create {world_file}")
    speedup = settings.get("speedup", 200.0)
    if not isinstance(speedup, int | float) or speedup <= 0:
        raise InputError("sim.speedup", speedup, "must be a positive number")
    extra = {k: settings[k] for k in ("faults", "fault_rate", "link_factor") if k in settings}
    inv = load_inventory(fleet_file)
    world.create(world_from_inventory(inv, seed=int(settings.get("seed", 7)), speedup=float(speedup),
                                      extra=extra))
    return world.path


def create_backend(settings: Mapping[str, Any]) -> SimBackend:
    return SimBackend(str(create_world(settings)))
