"""ferry's operations: what a person or a script can ask of it, whichever surface they use.

    CLI (service.cli: Typer + Rich)          REST API (service.api: FastAPI)
      parse options, render tables/JSON        parse bodies, answer JSON / HTTP status
                       \\                        /
                        service.operations (this package)
          requests    one pydantic model per verb (bounds, defaults, one wording of a mistake)
          planning    inventory (live | snapshot), policy (+ overrides), planners -> Planned
          outlook     the live fleet as the active jobs will leave it (reservations, moves to come)
          execution   drift, jobs (approve, window), controls, listing/detail, run, resume, cleanup
          surfaces    the table of verbs: CLI command <-> route, and what only one surface has
                        |
           planners / service.jobs / service.engine / service.worker / Runtime

A surface does three things: parse its input into a request, call one operation, render the
answer. Everything else (which fleet, which policy, what makes a plan unsafe, which rule refuses a
control) is decided here once, so both surfaces give the same answers and the same refusals.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Where each public name lives. The package imports its modules on first use (PEP 562): the
#: requests are pydantic models only, while planning and execution bring the planners and the job
#: store, which ``ferry --help`` and the option definitions of every command need not pay for.
_HOMES: dict[str, str] = {
    **dict.fromkeys(("PlanDrift", "Review", "Submitted", "control", "job_detail", "list_jobs",
                     "resume_unfinished", "run_cleanups", "run_here", "submit_nodes", "submit_plan"), "execution"),
    **dict.fromkeys(("NodeGoal", "Planned", "current_inventory", "place_container", "plan_nodes",
                     "plan_rebalancing"), "planning"),
    **dict.fromkeys(("JobListRequest", "JobOptions", "NodesJobRequest", "NodesPlanRequest", "PlaceRequest",
                     "PlanJobRequest", "RebalanceRequest", "Solver"), "requests"),
}

if TYPE_CHECKING:
    from service.operations.execution import (
        PlanDrift,
        Review,
        Submitted,
        control,
        job_detail,
        list_jobs,
        resume_unfinished,
        run_cleanups,
        run_here,
        submit_nodes,
        submit_plan,
    )
    from service.operations.planning import (
        NodeGoal,
        Planned,
        current_inventory,
        place_container,
        plan_nodes,
        plan_rebalancing,
    )
    from service.operations.requests import (
        JobListRequest,
        JobOptions,
        NodesJobRequest,
        NodesPlanRequest,
        PlaceRequest,
        PlanJobRequest,
        RebalanceRequest,
        Solver,
    )


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "JobListRequest", "JobOptions", "NodeGoal", "NodesJobRequest", "NodesPlanRequest", "PlaceRequest", "PlanDrift",
    "PlanJobRequest", "Planned", "RebalanceRequest", "Review", "Solver", "Submitted", "control", "current_inventory",
    "job_detail", "list_jobs", "place_container", "plan_nodes", "plan_rebalancing", "resume_unfinished",
    "run_cleanups", "run_here", "submit_nodes", "submit_plan",
]
