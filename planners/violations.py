"""Rule violations and overloads a snapshot already has, as (unit to move, why) pairs.

A rebalance fixes these first, at every aggressiveness. Each rule detects its own
(:mod:`planners.rules`): two anti-affinity members on one node (the later ones by id move), a
container outside its ``pin_to`` nodes, an affinity group split over nodes (the members join the
node where most of its memory is), and a node whose configured memory or CPUs exceed its size x
overcommit (the smallest units that bring it back move).
"""

from __future__ import annotations

from planners.rules import RULES
from planners.state import FleetState
from planners.units import Unit


def violations(state: FleetState, units: list[Unit]) -> list[tuple[Unit, str]]:
    """Every violation of the snapshot, each unit once, in a stable order (rules' ``fix_order``)."""
    return RULES.violations(state, units)
