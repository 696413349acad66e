"""Units of placement: an affinity group (or a lone container) that lands on one node as a whole.

Affinity groups move together, so the planner never places a container: it places a
:class:`Unit`. A unit's demand is the sum of its members; its allowed nodes are the intersection of
its members' ``pin_to`` lists; a pinned or ignored member makes the whole unit immovable.
"""

from __future__ import annotations

from dataclasses import dataclass

from planners.state import FleetState

MIXED = "mixed"
#: Platform of a new container that may go to a node of either platform.
ANY = "any"


@dataclass(frozen=True)
class Unit:
    """Containers that must end on one node. ``key`` (smallest member id) names it stably."""

    members: tuple[str, ...]
    memory_mb: float
    cpus: float
    platform: str  # MIXED when members sit on nodes of different platforms (never movable)
    allowed: frozenset[str] | None  # None: any node
    immovable: tuple[str, ...]  # members that never move (pinned / ignored)

    @property
    def key(self) -> str:
        return self.members[0]

    @property
    def label(self) -> str:
        return self.key if len(self.members) == 1 else f"{self.key} (+{len(self.members) - 1} in affinity)"


def build_unit(state: FleetState, members: list[str]) -> Unit:
    """Aggregate ``members`` (one affinity group, or one container) into a Unit."""
    rules = state.rules
    members_sorted = tuple(sorted(members))
    allowed: frozenset[str] | None = None
    for ct in members_sorted:
        pins = rules.pin_to.get(ct)
        if pins is not None:
            allowed = pins if allowed is None else allowed & pins
    platforms = {state.nodes[state.where[ct].node].platform for ct in members_sorted}
    cts = [state.containers[ct] for ct in members_sorted]
    return Unit(
        members=members_sorted,
        memory_mb=float(sum(c.memory_mb for c in cts)),
        cpus=float(sum(c.cpus for c in cts)),
        platform=platforms.pop() if len(platforms) == 1 else MIXED,
        allowed=allowed,
        immovable=tuple(ct for ct in members_sorted if rules.immovable(ct)),
    )


def units_of(state: FleetState, cts: list[str]) -> list[Unit]:
    """The units containing any of ``cts`` (each affinity group once), in a stable order."""
    seen: set[str] = set()
    out: list[Unit] = []
    for ct in cts:
        if ct in seen:
            continue
        group = state.affinity_of.get(ct, (ct,))
        members = sorted(m for m in group if m in state.containers)
        seen.update(members)
        out.append(build_unit(state, members))
    return out


def all_units(state: FleetState) -> list[Unit]:
    """Every unit of the fleet, in the snapshot's container order."""
    return units_of(state, [c.id for c in state.inv.containers])


def unit_memory_on(state: FleetState, unit: Unit, node: str) -> float:
    """Memory the unit would add to ``node`` (members already there add nothing)."""
    return sum(state.containers[ct].memory_mb for ct in unit.members if state.where[ct].node != node)


def arriving(state: FleetState, unit: Unit, node: str) -> list[str]:
    """Members of ``unit`` not yet on ``node`` (those a move there would carry)."""
    return [ct for ct in unit.members if state.where[ct].node != node]
