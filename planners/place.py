"""place: the best node for a new container, every feasible node ranked, every other one explained.

The new container is added to the bookkeeping as a container that lives nowhere yet, so the same
filters and scorers as for moves rank the nodes (its disk is created, never copied; it moves no
bytes). The result is for ``ferry place`` (table or JSON via :meth:`PlaceResult.to_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleet.errors import InputError
from fleet.model import Container, Inventory
from fleet.policy import Policy
from planners.ranking import Candidate, Rejection, explain_unplaced, rank
from planners.rulebook import Ctx
from planners.state import FleetState, Placement
from planners.units import ANY, Unit

#: Id of the not-yet-existing container (not a valid snapshot id, so it never collides).
NEW_ID = "@new"


@dataclass(frozen=True)
class Ranked:
    node: str
    score: float
    reason: str


@dataclass(frozen=True)
class PlaceResult:
    """Feasible nodes best first, and rejected nodes with the rule that rejected them."""

    candidates: list[Ranked]
    rejected: list[tuple[str, str]]
    unplaceable: str | None = None  # the binding constraint when no node fits

    @property
    def best(self) -> str | None:
        return self.candidates[0].node if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "candidates": [{"node": c.node, "score": round(c.score, 6), "reason": c.reason}
                           for c in self.candidates],
            "rejected": [{"node": n, "reason": r} for n, r in self.rejected],
            "unplaceable": self.unplaceable,
        }


def _check_request(inv: Inventory, cpus: float, memory_mb: int, disk_gb: float,
                   storage: str | None, platform: str | None) -> None:
    if not cpus > 0:
        raise InputError("cpus", cpus, "must be more than 0")
    if memory_mb < 0:
        raise InputError("memory", memory_mb, "must not be negative")
    if disk_gb < 0:
        raise InputError("disk", disk_gb, "must not be negative")
    if platform is not None and platform not in ("proxmox", "openvz"):
        raise InputError("platform", platform, "must be proxmox or openvz")
    if storage is not None and not any(storage in n.storage for n in inv.nodes):
        raise InputError("storage", storage, "no node has such a storage")


def _reason(state: FleetState, cand: Candidate, storage: str | None) -> str:
    node = cand.node
    cpu_after = state.cpu[node] / state.cpu_cap(node)
    where = f", disk on {cand.storages.get(NEW_ID)}" if cand.storages.get(NEW_ID) else ""
    return (f"memory {round(cand.memory_after * 100)} % after placement, "
            f"configured CPUs {round(cpu_after * 100)} % of capacity{where}")


def place(inv: Inventory, policy: Policy, *, cpus: float, memory_mb: int, disk_gb: float,
          storage: str | None = None, platform: str | None = None) -> PlaceResult:
    """Rank every node for a new container of the given size (see module docstring)."""
    _check_request(inv, cpus, memory_mb, disk_gb, storage, platform)
    state = FleetState(inv, policy)
    new = Container.model_construct(id=NEW_ID, node="", status="stopped", cpus=float(cpus),
                                    cpu_usage=0.0, memory_mb=int(memory_mb), memory_used_mb=0,
                                    disk_gb=float(disk_gb), storage=storage, dirty_mb_per_s=0.0)
    state.containers[NEW_ID] = new
    wants_disk = disk_gb > 0 or storage is not None
    state.where[NEW_ID] = Placement("", (storage or "") if wants_disk else None)
    unit = Unit(members=(NEW_ID,), memory_mb=float(memory_mb), cpus=float(cpus),
                platform=platform or ANY, allowed=None, immovable=())
    ctx = Ctx(state)
    good, bad = rank(ctx, unit, [n.name for n in inv.nodes])
    if storage is not None:
        keep = [c for c in good if c.storages.get(NEW_ID) == storage]
        bad += [_wrong_storage(c.node, storage) for c in good if c not in keep]
        good = keep
    return PlaceResult(
        candidates=[Ranked(c.node, c.score, _reason(state, c, storage)) for c in good],
        rejected=sorted((r.node, r.reason) for r in bad),
        unplaceable=None if good else explain_unplaced(ctx, unit, bad).replace(NEW_ID, "the container"),
    )


def _wrong_storage(node: str, storage: str) -> Rejection:
    return Rejection(node, "disk", f"{node} has no room on storage {storage}")
