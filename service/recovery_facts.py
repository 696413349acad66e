"""What service.recovery_seen remembers of each online node's containers, computed without the
ORM, so that ``ferry inventory`` (service/operations/listing.py) can see with sqlite3 alone that
an unchanged fleet has nothing to write."""

from __future__ import annotations

from typing import Any

from fleet.model import Container, Inventory

#: Figures that change with every look (kept out so that remembering stays a no-op).
_PASSING = ("cpu_usage", "memory_used_mb", "dirty_mb_per_s")


def _lasting(ct: Container) -> dict[str, Any]:
    facts = ct.model_dump(mode="json", exclude=set(_PASSING))
    facts["disk_gb"] = round(float(facts.get("disk_gb") or 0.0), 1)
    return facts


def facts_to_remember(inv: Inventory) -> tuple[list[str], dict[tuple[str, str], dict[str, Any]]]:
    """The online nodes, and the lasting facts of each of their containers by (node, container)."""
    online = [n.name for n in inv.nodes if n.online]
    now = {(c.node, c.id): _lasting(c) for c in inv.containers if c.node in set(online)}
    return online, now
