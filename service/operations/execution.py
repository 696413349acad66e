"""Jobs on request: re-validate a plan, store it as a job, control it, run it, read it back.

    plan (file / body) --submit_plan: moves? drift? review--> create_job(approve, window) --> job id
    nodes --submit_nodes: plan now, review--> create_job --> job id (None: nothing to move)
    job id --run_here--> Engine.run_job (or, for a windowed job, the worker's window-gated run)
    job id + action --control--> service.jobs.control_job --> (old state, new state)

Both surfaces call these: the CLI runs a job in its own process (``run_here``), the REST API only
records decisions and leaves running to the ``ferry serve`` worker. Every refusal is one
InputError (JobConflict, NoSuchJob, PlanDrift), so both surfaces say the same words.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from fleet.errors import InputError
from fleet.model import Inventory
from fleet.plan import Plan
from service import jobs, users
from service.interrupts import pause_on_interrupt
from service.lifecycle import JOB_RUNNABLE
from service.operations.planning import NodeGoal, Planned, fleet_to_plan_on, plan_nodes
from service.operations.requests import MAX_JOB_LIMIT, JobOptions, NodesJobRequest, NodesPlanRequest
from service.runtime import Runtime

if TYPE_CHECKING:  # the engine and the planners load when a job is stored or run, not to list jobs
    from service.engine import JobSummary
    from service.saga import Progress

#: Called with a plan and its fleet after every check passed and before the job is stored: the CLI
#: shows the plan and asks for confirmation there (raising to refuse); the API passes none.
Review = Callable[[Plan, Inventory], None]


class PlanDrift(InputError):
    """The fleet changed since the plan was made; ``changes`` lists every problem found."""

    def __init__(self, plan: Plan, changes: list[str]) -> None:
        super().__init__("plan", plan.inventory_digest, f"the fleet changed since it was made: {changes[0]} "
                         f"({len(changes)} problems); make a new plan")
        self.changes = changes


@dataclass(frozen=True)
class Submitted:
    """A plan made on request and the job that runs it (None when it moves nothing)."""

    planned: Planned
    job_id: int | None


def _worker() -> ModuleType:
    """service.worker, imported on first use: it brings APScheduler, which every start of the CLI
    would pay for and only windows and resumes need."""
    return importlib.import_module("service.worker")


def _store(rt: Runtime, plan: Plan, options: JobOptions, actor: str | None = None) -> int:
    stored = _worker().with_window(plan) if options.window else plan
    job_id = jobs.create_job(rt.sessions, stored, approved=options.approve)
    if options.approve and actor is not None:
        users.record_action(rt.sessions, job_id, "approve", actor)
    return job_id


def drift(rt: Runtime, plan: Plan, inventory: Inventory) -> list[str]:
    """What makes a saved plan unsafe on today's world (empty: run it as is): containers gone or
    moved since, then every rule and capacity check a new plan must pass."""
    from planners import check_plan

    problems = []
    for move in plan.moves:
        try:
            ct = inventory.container(move.ct)
        except KeyError:
            problems.append(f"container {move.ct} no longer exists")
            continue
        if ct.node != move.from_node:
            problems.append(f"container {move.ct} is now on {ct.node}, the plan expects {move.from_node}")
    return problems or check_plan(inventory, plan, rt.policy())


def submit_plan(rt: Runtime, plan: Plan, options: JobOptions, review: Review | None = None,
                actor: str | None = None) -> int:
    """Store a reviewed plan as a job exactly as written, after re-validating it against the live
    fleet: a plan that moves nothing, or that today's fleet no longer fits, is refused."""
    if not plan.moves:
        raise InputError("plan.moves", [], "the plan moves nothing: there is no job to run")
    jobs.check_conflicts(rt.sessions, plan)
    inv = fleet_to_plan_on(rt, plan.goal.kind, nodes=plan.goal.nodes)  # as the active jobs leave it
    changes = drift(rt, plan, inv)
    if changes:
        raise PlanDrift(plan, changes)
    if review is not None:
        review(plan, inv)
    return _store(rt, plan, options, actor)


def submit_nodes(rt: Runtime, goal: NodeGoal, request: NodesJobRequest, review: Review | None = None,
                 actor: str | None = None) -> Submitted:
    """Plan ``goal`` for the nodes against the live fleet now and store it as a job (on-call's
    evacuate, maintenance's drain); nothing to move is an answer, not a mistake."""
    from service import nodes as node_lifecycle

    jobs.check_nodes_free(rt.sessions, goal, request.nodes)  # first: its refusal names the job
    if goal == "drain":  # a drained node receives nothing afterwards (service.nodes)
        node_lifecycle.check_drain(rt.sessions, request.nodes)
    planned = plan_nodes(rt, goal, NodesPlanRequest(nodes=request.nodes))
    if not planned.plan.moves:  # maybe because a rival's job, made meanwhile, moves them all
        jobs.check_nodes_free(rt.sessions, goal, request.nodes)
    if review is not None:
        review(planned.plan, planned.inventory)
    job_id = _store(rt, planned.plan, request, actor) if planned.plan.moves else None
    if goal == "drain":
        node_lifecycle.record_drain(rt.sessions, planned.plan, planned.inventory, job_id)
    return Submitted(planned, job_id)


def uses_window(rt: Runtime, job_id: int) -> bool:
    """Whether the job starts moves only inside maintenance windows (the mark in its stored plan)."""
    with rt.sessions() as session:
        return bool(_worker().uses_window(jobs.get_job(session, job_id)))


def run_here(rt: Runtime, job_id: int, progress: Progress | None = None) -> JobSummary:
    """Run a job in this process until it ends; a windowed job starts moves only while a
    maintenance window is open and lasts (the worker's rule), and is then left for later. Ctrl-C
    pauses the job (service.interrupts)."""
    with pause_on_interrupt(rt, job_id):
        if not uses_window(rt, job_id):
            return rt.engine(progress=progress).run_job(job_id)
        summary = _worker().Worker(rt).run_one(job_id)
    if summary is None:
        raise jobs.JobConflict("job", job_id, f"could not run here; see 'ferry job show {job_id}'")
    return summary


def resume_unfinished(rt: Runtime) -> list[JobSummary]:
    """Continue every unfinished job nobody runs, oldest first, from what the store and the world say
    (the jobs the ``ferry serve`` worker would take up)."""
    unfinished = [j for j in jobs.list_jobs(rt.sessions, limit=MAX_JOB_LIMIT)
                  if j["state"] in JOB_RUNNABLE and not j["run_by"]]
    return [run_here(rt, job["id"]) for job in reversed(unfinished)]


def run_cleanups(rt: Runtime) -> list[str]:
    """Finish cleanups left for later: retire kept sources whose retention ended, stop forwarders."""
    return rt.engine().run_cleanups()


def control(rt: Runtime, job_id: int, action: str, actor: str | None = None) -> dict[str, Any]:
    """Change a job's state with the rules of service.lifecycle.CONTROLS: {id, from, state};
    ``actor`` (who asked) is recorded beside the job (service.users)."""
    old, new = jobs.control_job(rt.sessions, job_id, action)
    if actor is not None:
        users.record_action(rt.sessions, job_id, action, actor)
    return {"id": job_id, "from": old, "state": new}


def list_jobs(rt: Runtime, limit: int) -> list[dict[str, Any]]:
    """Newest first."""
    return jobs.list_jobs(rt.sessions, limit=limit)


def job_detail(rt: Runtime, job_id: int) -> dict[str, Any]:
    """Moves, their steps, the journal, and whether the job waits for maintenance windows."""
    return {**jobs.job_detail(rt.sessions, job_id), "window": uses_window(rt, job_id),
            "actions": users.job_actions(rt.sessions, job_id)}
