"""Evacuating a dead node from its backups: detect, plan, fence, store the job, report stale copies.

    ferry evacuate N (N offline) --refuse_offline--> one line offering --from-backups (exit 2)
    ferry evacuate N --from-backups [--node-is-fenced]
        the inventory + N's containers it cannot show: as last seen (recovery_seen.py), and
        backend.restores().lost_containers(N) (OpenVZ: read from N's archives)
        backend.restores().list_backups(N) --newest per container--> planners.backups.plan_from_backups
        --> fence choice (the operator's word or [recovery] fence_command; neither: refused, nothing
            stored) written on every restore --> a normal job (service.jobs.create_job)
    the engine runs each restore through the saga (adapters.base.RESTORE_STEPS): fence, restore,
    start, verify; cleanup waits for N to come back, then keeps its stale copies stopped
    ``ferry recovery stale`` --stale_report--> what was found on a returned node, and what waits

Nothing here starts a container: the saga's fence step comes before every start, and a job is
stored only once a fence is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from adapters.base import Step
from adapters.restore import STALE_MARK, newest_backups
from fleet.crossings import name_crossings
from fleet.errors import InputError
from fleet.model import Inventory
from fleet.plan import Plan
from planners.backups import Archive, plan_from_backups
from service import jobs
from service.lifecycle import MoveState, Phase
from service.operations.execution import Review, Submitted
from service.operations.planning import Planned, current_inventory, planning_policy
from service.recovery_seen import last_seen
from service.runtime import Runtime
from service.store import MoveRow


def offline_nodes(inv: Inventory, nodes: list[str]) -> list[str]:
    """The named nodes the backend reports offline or unreachable (unknown names are left to the
    planner, which refuses them by name)."""
    known = {n.name: n for n in inv.nodes}
    return [name for name in nodes if name in known and not known[name].online]


def refuse_offline(inv: Inventory, nodes: list[str]) -> None:
    """An evacuation cannot copy from a dead node: say so in one line, before anything is planned
    or stored, and offer the restore from backups."""
    dead = offline_nodes(inv, nodes)
    if dead:
        raise InputError("node", dead[0], "is offline (unreachable): nothing can be copied from it; "
                         f"bring its containers back from their backups with 'ferry evacuate {dead[0]} "
                         "--from-backups --node-is-fenced' (or a configured fence command)")


def archives_of(rt: Runtime, inv: Inventory, node: str) -> dict[str, Archive]:
    """The newest usable archive of every container of ``node``, as the backend lists them."""
    cts = [c.id for c in inv.on_node(node)]
    found = newest_backups(rt.backend.restores().list_backups(node, cts))
    return {ct: Archive(b.archive, b.taken_at, b.bytes, b.storage) for ct, b in found.items()}


def with_lost_containers(rt: Runtime, inv: Inventory, node: str) -> Inventory:
    """``inv`` with the dead node's containers that discovery could not show (an OpenVZ node's
    are known only to the node itself): as ferry last saw them there, and those its archives
    describe (created since ferry last looked)."""
    known = {c.id for c in inv.containers}
    seen = [c for c in last_seen(rt.sessions, node) if c.id not in known]
    lost = seen + rt.backend.restores().lost_containers(node, known | {c.id for c in seen})
    return inv.model_copy(update={"containers": [*inv.containers, *lost]}) if lost else inv


def plan_recovery(rt: Runtime, node: str, snapshot: Inventory | None = None) -> Planned:
    """The plan that brings ``node``'s containers back from their backups (nothing stored)."""
    inv = current_inventory(rt, snapshot)
    if node in {n.name for n in inv.nodes} and node not in offline_nodes(inv, [node]):
        raise InputError("node", node, "is online: evacuate it with 'ferry evacuate' (restoring from "
                         "backups is for a dead node, and would lose the data written since)")
    if snapshot is None:
        inv = with_lost_containers(rt, inv, node)
    plan = plan_from_backups(inv, node, archives_of(rt, inv, node), planning_policy(rt, snapshot),
                             now=rt.backend.now())
    for move in plan.moves:  # a mixed fleet: a restore between clusters without a path
        why = rt.backend.restores().path_refusal(move.from_node, move.to)
        if why:
            raise InputError("node", node, why)
    return Planned(name_crossings(plan, inv), inv)


@dataclass(frozen=True)
class Fence:
    """How the dead node is fenced: the operator's word, or the command that must succeed."""

    confirmed: bool = False
    command: tuple[str, ...] = ()


def fence_of(rt: Runtime, node_is_fenced: bool) -> Fence:
    """The fence the job will use; neither confirmed nor configured: refused (nothing stored)."""
    command = tuple(rt.config.recovery.fence_command)
    if not node_is_fenced and not command:
        raise InputError("--node-is-fenced", False, "a dead node must be fenced before any copy of its "
                         "containers starts: confirm it is powered off with --node-is-fenced, or "
                         "configure [recovery] fence_command")
    return Fence(node_is_fenced, command)


def fenced_plan(plan: Plan, fence: Fence) -> Plan:
    """``plan`` with the fence written on every restore (the saga's fence step reads it)."""
    moves = [m if m.restore is None else m.model_copy(update={"restore": m.restore.model_copy(
        update={"fenced": fence.confirmed, "fence_command": list(fence.command)})}) for m in plan.moves]
    return plan.model_copy(update={"moves": moves})


def submit_recovery(rt: Runtime, node: str, fence: Fence, review: Review | None = None) -> Submitted:
    """Plan the recovery of ``node`` now and store it as an approved job (None: nothing to restore)."""
    planned = plan_recovery(rt, node)
    plan = fenced_plan(planned.plan, fence)
    if review is not None:
        review(plan, planned.inventory)
    if not plan.moves:
        return Submitted(Planned(plan, planned.inventory), None)
    return Submitted(Planned(plan, planned.inventory), jobs.create_job(rt.sessions, plan, approved=True))


def stale_report(rt: Runtime) -> list[dict[str, Any]]:
    """Every container ferry restored from a backup, and what became of the copy on its dead node:
    found and kept stopped (remove it by hand), or still waiting for the node to come back."""
    with rt.sessions() as session:
        rows = [m for m in session.scalars(select(MoveRow).where(MoveRow.state == MoveState.SUCCEEDED))
                if (m.options or {}).get("archive")]
    out = []
    for m in rows:
        handled = m.step == Step.CLEANUP and m.phase == Phase.DONE
        out.append({"job": m.job_id, "ct": m.ct, "node": m.source, "restored_on": m.target,
                    "stale": "kept stopped, onboot off, marked " + STALE_MARK + "; remove it by hand"
                    if handled else f"{m.source} not back yet: checked when it returns ('ferry cleanup')"})
    return out
