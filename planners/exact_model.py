"""The exact model as the rules see it: variables, the state it starts from, and node loads.

:func:`planners.cpsat.solve` builds a Boolean ``x[unit key, node]`` per unit and allowed node and
hands this object to every rule's ``constrain`` (:mod:`planners.rules`). Kept apart from
:mod:`planners.cpsat` so the rules can state their constraints without importing the solver.
Loads are counted in units of :data:`GRAIN_MB` (VPS sizes are multiples of it) to keep products
small.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from planners.state import FleetState
from planners.units import Unit

GRAIN_MB = 256


def grains(mb: float) -> int:
    return int(round(mb / GRAIN_MB))


@dataclass
class ExactModel:
    """A CP-SAT model under construction (``model`` is an ``ortools`` ``CpModel``)."""

    model: Any
    state: FleetState
    units: list[Unit]
    x: dict[tuple[str, str], Any]  # (unit key, node) -> Boolean variable
    moving: Collection[str]  # members of ``units``
    #: node -> (memory load variable in grains, its upper bound); set by the capacity rule and
    #: minimised by the objective
    loads: dict[str, tuple[Any, int]] = field(default_factory=dict)

    def fixed(self) -> tuple[dict[str, float], dict[str, float]]:
        """Memory and CPUs per node that stay whatever the model decides (non-moving containers)."""
        st = self.state
        mem, cpu = dict(st.mem), dict(st.cpu)
        for ct in self.moving:
            node = st.where[ct].node
            mem[node] -= st.containers[ct].memory_mb
            cpu[node] -= st.containers[ct].cpus
        return mem, cpu
