"""Feasibility filters: whether a node may take a unit, and the reason when it may not.

The filters are the rules' first form; the rules themselves (filter, violation detector, CP-SAT
constraint, plan check) live in :mod:`planners.rules`. A filter looks at one unit and one
candidate node and returns ``None`` (feasible) or a one-line reason naming the rule and the
figures (``"pve3 has 2.0 GiB RAM free; needs 4.0 GiB"``); the reasons reach plans (unplaced
entries) and ``ferry place`` output, so they are written for people. This module keeps the names
placement and its callers use.
"""

from __future__ import annotations

from planners.room_rules import GIB, cpu, disk, memory
from planners.rulebook import Ctx, FilterFn
from planners.rules import (
    RULES,
    anti_affinity,
    node_receives,
    not_emptying,
    not_excluded,
    pin_to,
    platform,
)
from planners.storage import assign_storage
from planners.units import Unit

__all__ = ["GIB", "Ctx", "FilterFn", "anti_affinity", "assign_storage", "cpu", "disk", "first_failure",
           "memory", "node_receives", "not_emptying", "not_excluded", "pin_to", "platform"]


def first_failure(ctx: Ctx, unit: Unit, node: str) -> tuple[str, str] | None:
    """The first registered filter that rejects ``node`` for ``unit``, as (filter name, reason)."""
    return RULES.first_failure(ctx, unit, node)
