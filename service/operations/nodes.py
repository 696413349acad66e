"""Node verbs on request: list, cordon, uncordon, drain and restore (``ferry node …``, ``/v1/nodes``).

    cordon / uncordon --service.nodes transition--> node_states (planners see it at once)
    drain --execution.submit_nodes("drain")--> drain job + origins recorded --> draining
        (the job's end settles the node: maintenance, or back to cordoned)
    restore --origins of N, each re-checked against today's fleet--> restore job --> restoring
        stay (never forced): a container gone, moved since, or changed since it left

Both surfaces call these; the CLI then runs a job in its own process, the API leaves it to the
``ferry serve`` worker, exactly as for evacuate and drain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapters.base import JournalEntry
from fleet.errors import InputError
from fleet.model import Inventory
from fleet.plan import Goal, Move, Plan, Predicted, Score
from fleet.policy import Policy
from fleet.rules import effective_rules
from fleet.snapshot import inventory_digest
from planners import check_plan
from planners.assemble import usage
from planners.costs import predict
from planners.state import FleetState, Placement
from service import nodes as lifecycle
from service.campaign_hooks import set_ha_maintenance
from service.jobs import add_journal, check_nodes_free
from service.operations.execution import Review, Submitted, submit_nodes
from service.operations.execution import _store as store_job
from service.operations.planning import current_inventory
from service.operations.requests import JobOptions, NodesJobRequest
from service.runtime import Runtime


class NodeDrainRequest(JobOptions):
    """``ferry node drain N``: cordon N and move everything off it (with ``window``: in windows)."""


class NodeRestoreRequest(JobOptions):
    """``ferry node restore N``: bring N's containers home (with ``window``: inside windows)."""


def _known(inv: Inventory, node: str) -> None:
    if node not in {n.name for n in inv.nodes}:
        raise InputError("node", node, f"no such node; the fleet has {', '.join(n.name for n in inv.nodes)}")


def list_nodes(rt: Runtime) -> list[dict[str, Any]]:
    """Every node with its lifecycle state, the job it follows, and its container count."""
    inv = rt.backend.discover()
    return lifecycle.states_view(lifecycle.stored_states(rt.sessions).values(), inv)


def change(rt: Runtime, node: str, event: lifecycle.NodeEvent) -> dict[str, Any]:
    """Cordon or uncordon: {node, from, state}; ``from`` equals ``state`` when the node was in
    that state already (nothing changed)."""
    _known(rt.backend.discover(), node)
    with rt.sessions.begin() as session:
        old, new = lifecycle.operator_change(session, node, event)
    return {"node": node, "from": str(old), "state": str(new)}


def drain_node(rt: Runtime, node: str, request: NodeDrainRequest, review: Review | None = None) -> Submitted:
    """Cordon ``node`` and store the job that moves its containers away (origins recorded). With
    ``[maintenance.ha]`` configured, Proxmox HA maintenance is set first (taken back if no job is
    stored after all), and journaled in the job."""
    if rt.config.maintenance.ha is not None:  # refuse before touching the cluster (same checks, same order)
        check_nodes_free(rt.sessions, "drain", [node])
        lifecycle.check_drain(rt.sessions, [node])
        _known(rt.backend.discover(), node)
    ha = set_ha_maintenance(rt.config, node, True)
    try:
        submitted = submit_nodes(rt, "drain", NodesJobRequest(nodes=[node], approve=request.approve,
                                                              window=request.window), review)
    except BaseException:
        set_ha_maintenance(rt.config, node, False)
        raise
    _journal(rt, submitted.job_id, ha)
    return submitted


def _journal(rt: Runtime, job_id: int | None, entries: list[JournalEntry]) -> None:
    for entry in entries if job_id is not None else ():
        add_journal(rt.sessions, job_id, None, "ha-maintenance", entry)


# -- restore -----------------------------------------------------------------------------------
@dataclass
class Restore:
    """The plan that brings a node's containers home, and the ones left where they are, with why."""

    node: str
    plan: Plan
    inventory: Inventory
    stay: list[dict[str, str]] = field(default_factory=list)
    job_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "job": self.job_id, "moves": [m.ct for m in self.plan.moves],
                "stay": self.stay}


def _why_not(inv: Inventory, origin: lifecycle.OriginRow, left: bool) -> str | None:
    """Why a container that left its node cannot simply come back (None: it can)."""
    if not left:
        return f"its drain move (job {origin.job_id}) did not succeed: it never left"
    try:
        ct = inv.container(origin.ct)
    except KeyError:
        return "it no longer exists"
    if ct.node != origin.moved_to:
        return f"moved since: it is on {ct.node}, not {origin.moved_to}"
    if lifecycle.fingerprint(ct) != origin.fingerprint:
        return f"changed since it left: {origin.fingerprint} -> {lifecycle.fingerprint(ct)}"
    return None


def per_wave(policy: Policy) -> int:
    """Moves into one node that may run at once within every concurrency limit."""
    return max(1, min(policy.max_incoming_per_node, policy.max_parallel, policy.max_outgoing_per_node))


def move_home(state: FleetState, ct_id: str, home: str, wave: int) -> Move:
    """The move of ``ct_id`` from where ``state`` has it back to ``home``, priced by the cost model."""
    ct, here = state.containers[ct_id], state.where[ct_id]
    copied = state.copies_disk(here, Placement(home, here.storage))
    cost = predict(ct, state.nodes[here.node], state.nodes[home], state.policy, copied)
    return Move.model_validate({"ct": ct_id, "from": here.node, "to": home, "method": cost.method, "wave": wave,
                                "predicted": Predicted(duration_s=cost.duration_s, downtime_s=cost.downtime_s,
                                                       bytes=cost.bytes),
                                "reason": f"return to {home}, where it lived before its drain"})


def _score(moves: list[Move]) -> Score:
    """Moves, bytes and the predicted makespan (waves run one after the other)."""
    waves: dict[int, float] = {}
    for m in moves:
        waves[m.wave] = max(waves.get(m.wave, 0.0), m.predicted.duration_s)
    return Score(moves=len(moves), bytes=sum(m.predicted.bytes for m in moves),
                 predicted_makespan_s=round(sum(waves.values()), 3))


def _affinity_groups(state: FleetState, cts: list[str]) -> list[list[str]]:
    """``cts`` in affinity groups (each in the order of its first member)."""
    groups: dict[frozenset[str], list[str]] = {}
    for ct in cts:
        groups.setdefault(state.rules.group_of(ct), []).append(ct)
    return list(groups.values())


def plan_restore(rt: Runtime, node: str, inv: Inventory) -> Restore:
    """Each container that left ``node`` comes back if it is still where its drain put it and
    still what it was, and if the move passes every rule and capacity check; the rest is listed."""
    with rt.sessions() as session:
        origins = list(session.scalars(lifecycle.origins_of(node)))
        left = {(m.job_id, m.ct) for m in session.scalars(lifecycle.drained_moves(origins))}
    home_inv = lifecycle.receiving_again(inv, node)
    policy = rt.policy()
    state = FleetState(home_inv, policy, effective_rules(home_inv))
    size = per_wave(policy)
    goal = Goal(kind="restore", nodes=[node])
    moves: list[Move] = []
    stay = []
    eligible: list[str] = []
    for origin in origins:
        why = _why_not(inv, origin, (origin.job_id, origin.ct) in left)
        if why is None:
            eligible.append(origin.ct)
        else:
            stay.append({"ct": origin.ct, "reason": why})
    for group in _affinity_groups(state, eligible):  # an affinity group comes back together or not at all
        trial = [*moves, *(move_home(state, ct, node, (len(moves) + i) // size) for i, ct in enumerate(group))]
        problems = check_plan(home_inv, Plan(goal=goal, inventory_digest="", moves=trial), policy)
        if problems:
            stay += [{"ct": ct, "reason": problems[0].split(": ", 1)[-1]} for ct in group]
            continue
        for move in trial[len(moves):]:
            state.apply(move.ct, node, None)
        moves = trial
    plan = Plan(goal=goal, inventory_digest=inventory_digest(inv), moves=moves,
                before=usage(FleetState(home_inv, policy)), after=usage(state), score=_score(moves))
    return Restore(node, plan, inv, stay)


def restore_node(rt: Runtime, node: str, request: NodeRestoreRequest, review: Review | None = None) -> Restore:
    """Plan the return of ``node``'s containers and store it as a job; the node is restoring until
    the job ends (active at once when nothing can come back)."""
    inv = current_inventory(rt)
    _known(inv, node)
    with rt.sessions() as session:
        lifecycle.node_transition(lifecycle.NodeEvent.RESTORE, node, lifecycle.state_of(session, node))
    ha = set_ha_maintenance(rt.config, node, False)  # a node in HA maintenance receives nothing
    restore = plan_restore(rt, node, inv)
    if review is not None:
        review(restore.plan, inv)
    if restore.plan.moves:
        restore.job_id = store_job(rt, restore.plan, request)
        _journal(rt, restore.job_id, ha)
    lifecycle.record_restore(rt.sessions, node, restore.plan, restore.stay, restore.job_id)
    return restore

