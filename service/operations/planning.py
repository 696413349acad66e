"""Plans on request: which fleet, which policy, which planner, with the caller's overrides.

    snapshot (offline) | backend.discover() (live) --> Inventory
        live: + the active jobs' reservations and moves to come (outlook.planning_fleet)
    config policy (offline) | + learned link speeds (live) --> Policy (+ the request's knobs)
        --> planners.plan_evacuate / plan_drain / plan_rebalance / place --> Planned(plan, inventory)

Nothing here stores or moves anything: a plan is data to review, save or submit as a job. A live
plan is made against the fleet as the active jobs will leave it, so it never targets a node an
evacuation or drain reserves, nor counts free room another job's moves will fill; an offline plan
is a function of its snapshot alone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

from fleet.crossings import name_crossings
from fleet.model import Inventory
from fleet.plan import Plan
from fleet.policy import Policy
from service.nodes import apply_node_states, stored_states
from service.operations.outlook import planning_fleet
from service.operations.requests import NodesPlanRequest, PlaceRequest, RebalanceRequest
from service.recovery_seen import remember
from service.runtime import Runtime

NodeGoal = Literal["evacuate", "drain"]


def node_planner(goal: NodeGoal) -> Callable[..., Plan]:
    """The planner of a node goal; the planners (numpy, and OR-Tools on demand) are imported by the
    first plan, not by every command that reads the fleet or the jobs."""
    from planners import plan_drain, plan_evacuate

    return {"evacuate": plan_evacuate, "drain": plan_drain}[goal]


@dataclass(frozen=True)
class Planned:
    """A plan and the fleet it was computed from (people read the plan against it)."""

    plan: Plan
    inventory: Inventory


def current_inventory(rt: Runtime, snapshot: Inventory | None = None) -> Inventory:
    """The snapshot the caller gave (already parsed by its surface), else the live fleet (whose
    containers are remembered per node: service/recovery_seen.py)."""
    if snapshot is not None:
        return snapshot
    inv = apply_node_states(rt.backend.discover(), stored_states(rt.sessions))
    remember(rt.sessions, inv)
    return inv


def fleet_to_plan_on(rt: Runtime, kind: str, snapshot: Inventory | None = None,
                     nodes: Collection[str] = ()) -> Inventory:
    """The snapshot as given (offline), else the live fleet as the active jobs will leave it, for
    a plan of ``kind`` emptying ``nodes``."""
    inv = current_inventory(rt, snapshot)
    return inv if snapshot is not None else planning_fleet(rt, inv, kind=kind, nodes=nodes)


def planning_policy(rt: Runtime, snapshot: Inventory | None) -> Policy:
    """Offline plans use the config's policy alone, so the same snapshot always gives the same
    plan; live plans add link speeds learned from finished moves."""
    return rt.config.policy if snapshot is not None else rt.policy()


def plan_nodes(rt: Runtime, goal: NodeGoal, request: NodesPlanRequest,
               snapshot: Inventory | None = None) -> Planned:
    """Give every container on ``request.nodes`` a destination (nothing else moves)."""
    from service.addressing import address_plan

    inv = fleet_to_plan_on(rt, goal, snapshot, request.nodes)
    plan = address_plan(lambda i: node_planner(goal)(
        i, request.nodes, planning_policy(rt, snapshot), solver=request.solver.value,
        time_limit_s=request.time_limit), inv, rt, offline=snapshot is not None)
    return Planned(name_crossings(plan, inv), inv)


def plan_rebalancing(rt: Runtime, request: RebalanceRequest, snapshot: Inventory | None = None) -> Planned:
    """Spread load with few, cheap moves; the request's knobs override the policy. Live plans
    respect the cooldown of recently moved containers (offline ones have no history)."""
    from planners import plan_rebalance
    from service.addressing import address_plan

    inv = fleet_to_plan_on(rt, "rebalance", snapshot)
    policy = planning_policy(rt, snapshot).model_copy(update=request.policy_overrides())
    moved, now = rt.cooldown_inputs() if snapshot is None else ({}, None)
    plan = address_plan(lambda i: plan_rebalance(
        i, policy, last_moved=moved, now=now, solver=request.solver.value,
        time_limit_s=request.time_limit), inv, rt, offline=snapshot is not None)
    return Planned(name_crossings(plan, inv), inv)


def place_container(rt: Runtime, request: PlaceRequest, snapshot: Inventory | None = None) -> dict[str, Any]:
    """The best node for a new container, with every node's rank and reasons."""
    from planners import place

    return place(fleet_to_plan_on(rt, "place", snapshot), planning_policy(rt, snapshot), cpus=request.cpus,
                 memory_mb=request.memory, disk_gb=request.disk, storage=request.storage).to_dict()
