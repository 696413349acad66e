"""Cooldown: containers moved recently do not move again for balance (no ping-pong)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from fleet.model import Inventory
from fleet.policy import Policy


def cooling(inv: Inventory, policy: Policy, last_moved: Mapping[str, datetime] | None,
            now: datetime | None) -> set[str]:
    """Containers moved within ``policy.cooldown_hours``. ``now`` defaults to the snapshot's
    ``taken_at``; with neither, every container in ``last_moved`` counts as cooling (the safe side)."""
    if not last_moved:
        return set()
    if now is None and inv.taken_at:
        now = datetime.fromisoformat(inv.taken_at.replace("Z", "+00:00"))
    if now is None:
        return set(last_moved)
    window = timedelta(hours=policy.cooldown_hours)
    out = set()
    for ct, when in last_moved.items():
        if (when.tzinfo is None) != (now.tzinfo is None):
            when = when.replace(tzinfo=now.tzinfo)
        if now - when < window:
            out.add(ct)
    return out
