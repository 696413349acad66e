"""evacuate from backups: a dead node's containers come back from their newest archives.

    containers on the dead node --newest usable archive each (or Proxmox HA on shared storage)
        | none: unrecoverable (listed in ``unplaced``, never skipped silently)
        v
    plan_evacuate of the recoverable ones (the usual filters, scorers and rule registry choose
    each destination; the dead node itself receives nothing)
        v
    each move of a dead node's container becomes a restore: the archive, its age (the data lost,
    the RPO), its size, the predicted restore time (archive / link speed + start); the plan says
    the oldest data age

The plan stays a contract v1 plan: a restore keeps ``method: dump`` (vzdump -> restore is the
dump path's second half) and carries its facts in the extension key ``restore``; the plan carries
``recovery`` (node, oldest data age, unrecoverable containers). Pure: the archives and "now" are
inputs (the backend's clock, seconds), nothing is read here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from fleet.model import Container, Inventory
from fleet.plan import Move, Plan, Predicted, Recovery, Restore, Unplaced
from fleet.policy import Policy
from fleet.snapshot import inventory_digest
from planners.evacuate import plan_evacuate, resolve_nodes

MB = 1024 * 1024
#: Seconds Proxmox HA takes to fence a lost node and recover its services elsewhere (the
#: watchdog's 60 s, then the CRM's recovery and the start), for the prediction only.
HA_RECOVERY_S = 120.0


@dataclass(frozen=True)
class Archive:
    """The newest usable backup of one container, as the backend listed it."""

    name: str
    taken_at: float
    bytes: int
    storage: str = ""


def describe_age(seconds: float) -> str:
    """A data age for people: 42 s, 17 min, 5.2 h, 3.1 d."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _ha_recovers(ct: Container) -> bool:
    """Proxmox HA recovers an HA resource of a lost node itself (its disk on shared storage; a
    dead node's config, which says where the disk is, cannot be read). ferry never restores one:
    HA would start its own copy too, and two copies would share the addresses."""
    return ct.ha


def _restore(ct: Container, move: Move, archive: Archive | None, inv: Inventory, policy: Policy,
             now: float) -> Move:
    """``move`` (the evacuation's choice for ``ct``) as a restore from ``archive``."""
    if archive is None:  # HA on shared storage: nothing to restore, nothing lost
        facts = Restore(archive=f"ha:{ct.id}", taken_at=now, data_age_s=0.0, ha=True)
        predicted = Predicted(duration_s=HA_RECOVERY_S, downtime_s=HA_RECOVERY_S, bytes=0, data_age_s=0.0)
        why = f"Proxmox HA recovers {ct.id} from shared storage (followed); expected on {move.to}"
        return move.model_copy(update={"restore": facts, "predicted": predicted, "reason": why,
                                       "method": "dump", "after": []})
    age = max(0.0, now - archive.taken_at)
    seconds = archive.bytes / MB / policy.link_speed(archive.storage or ct.node, move.to) + policy.start_s
    facts = Restore(archive=archive.name, taken_at=archive.taken_at, data_age_s=round(age, 3),
                    bytes=archive.bytes, storage=archive.storage)
    predicted = Predicted(duration_s=round(seconds, 3), downtime_s=round(seconds, 3), bytes=archive.bytes,
                          data_age_s=round(age, 3))
    why = f"restore from backup {describe_age(age)} old; {move.reason}"
    return move.model_copy(update={"restore": facts, "predicted": predicted, "reason": why, "method": "dump"})


def plan_from_backups(inv: Inventory, node: str, archives: Mapping[str, Archive], policy: Policy, *,
                      now: float) -> Plan:
    """Bring every container of the dead ``node`` back from its newest archive in ``archives``
    (by container id), or leave it to Proxmox HA; the rest are unrecoverable."""
    [node] = resolve_nodes(inv, [node])
    lost = [c for c in inv.on_node(node) if c.id not in archives and not _ha_recovers(c)]
    lost_ids = {c.id for c in lost}
    recoverable = inv.model_copy(update={"containers": [c for c in inv.containers if c.id not in lost_ids]})
    plan = plan_evacuate(recoverable, [node], policy)
    moves = [_restore(inv.container(m.ct), m, archives.get(m.ct), inv, policy, now)
             if m.from_node == node else m for m in plan.moves]
    unplaced = [Unplaced(ct=c.id, reason=f"unrecoverable: no backup of {c.id} and {node} is down")
                for c in lost] + plan.unplaced
    oldest = max((m.restore.data_age_s for m in moves if m.restore is not None), default=0.0)
    longest = max((m.predicted.duration_s for m in moves), default=0.0)
    score = plan.score.model_copy(update={
        "bytes": sum(m.predicted.bytes for m in moves),
        "predicted_makespan_s": round(longest * math.ceil(len(moves) / policy.max_parallel), 3)})
    return plan.model_copy(update={
        "inventory_digest": inventory_digest(inv), "moves": moves, "unplaced": unplaced, "score": score,
        "recovery": Recovery(node=node, oldest_data_age_s=round(oldest, 3), unrecoverable=sorted(lost_ids))})
