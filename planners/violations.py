"""Rule violations and overloads a snapshot already has, as (unit to move, why) pairs.

A rebalance fixes these first, at every aggressiveness: two anti-affinity members on one node
(the later ones by id move), a container outside its ``pin_to`` nodes, an affinity group split over
nodes (the members join the node where most of its memory is), and a node whose configured
memory or CPUs exceed its size x overcommit (the smallest units that bring it back move).
"""

from __future__ import annotations

from collections.abc import Iterator

from planners.state import EPS, FleetState
from planners.units import Unit


def _anti(state: FleetState, unit_of: dict[str, Unit]) -> Iterator[tuple[Unit, str]]:
    for group in state.rules.anti_affinity:
        by_node: dict[str, list[str]] = {}
        for ct in sorted(group):
            if ct in state.where:
                by_node.setdefault(state.where[ct].node, []).append(ct)
        for node, cts in sorted(by_node.items()):
            for ct in cts[1:]:
                yield unit_of[ct], f"{ct} shares {node} with {cts[0]} (anti-affinity)"


def _pins(state: FleetState, units: list[Unit]) -> Iterator[tuple[Unit, str]]:
    for unit in units:
        if unit.allowed is None:
            continue
        outside = [ct for ct in unit.members if state.where[ct].node not in unit.allowed]
        if outside:
            yield unit, f"{outside[0]} is on {state.where[outside[0]].node}, outside its pin_to"


def _split(state: FleetState, units: list[Unit]) -> Iterator[tuple[Unit, str]]:
    for unit in units:
        nodes = sorted({state.where[ct].node for ct in unit.members})
        if len(nodes) > 1:
            yield unit, f"affinity group {unit.key} is split over {', '.join(nodes)}"


def _overloads(state: FleetState, unit_of: dict[str, Unit]) -> Iterator[tuple[Unit, str]]:
    for name, node in state.nodes.items():
        mem_limit = node.memory_mb * state.policy.memory_overcommit
        cpu_limit = state.cpu_cap(name)
        excess_mem = state.mem[name] - mem_limit
        excess_cpu = state.cpu[name] - cpu_limit
        if excess_mem <= EPS and excess_cpu <= EPS:
            continue
        what = (f"configured memory {state.mem[name] / 1024:.0f} GiB > {mem_limit / 1024:.0f} GiB"
                if excess_mem > EPS else f"configured CPUs {state.cpu[name]:g} > {cpu_limit:g}")
        units = sorted({unit_of[ct].key: unit_of[ct] for ct in state.members[name]}.values(),
                       key=lambda u: (u.memory_mb, u.key))
        for unit in units:
            if excess_mem <= EPS and excess_cpu <= EPS:
                break
            if unit.immovable:
                continue
            yield unit, f"{name} is over capacity ({what})"
            excess_mem -= unit.memory_mb
            excess_cpu -= unit.cpus


def violations(state: FleetState, units: list[Unit]) -> list[tuple[Unit, str]]:
    """Every violation of the snapshot, each unit once, in a stable order."""
    unit_of = {ct: u for u in units for ct in u.members}
    out: list[tuple[Unit, str]] = []
    seen: set[str] = set()
    for unit, why in [*_anti(state, unit_of), *_pins(state, units), *_split(state, units),
                      *_overloads(state, unit_of)]:
        if unit.key not in seen:
            seen.add(unit.key)
            out.append((unit, why))
    return out
