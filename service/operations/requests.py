"""What a caller may ask of ferry: one pydantic model per verb, shared by the CLI and the REST API.

The API uses these models as its request bodies; the CLI builds the same model from its options.
Bounds, defaults and the wording of a refusal are therefore declared once, and a mistake reads the
same on both surfaces (``aggressiveness=9: Input should be less than or equal to 5``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Seconds CP-SAT searches when the caller does not say.
DEFAULT_TIME_LIMIT_S = 10.0
#: Jobs listed when the caller does not say, and the most one listing returns.
DEFAULT_JOB_LIMIT, MAX_JOB_LIMIT = 50, 10_000


class Solver(StrEnum):
    greedy = "greedy"
    cp_sat = "cp-sat"


class Request(BaseModel):
    """A request names only keys ferry knows: a typo is refused, never ignored. Figures and flags
    are strict: ``true`` is not a count, ``"5"`` is not a number."""

    model_config = ConfigDict(extra="forbid")


class SolverChoice(Request):
    solver: Solver = Field(default=Solver.greedy,
                           description="greedy: fast, near-optimal; cp-sat: OR-Tools, for small fleets")
    time_limit: float = Field(default=DEFAULT_TIME_LIMIT_S, ge=0.1, strict=True, description="cp-sat: seconds to search")


class NodesPlanRequest(SolverChoice):
    nodes: list[str] = Field(min_length=1)


class RebalanceRequest(SolverChoice):
    aggressiveness: int | None = Field(default=None, ge=1, le=5, strict=True, description="1 = fix violations only, 5 = any gain")
    max_moves: int | None = Field(default=None, ge=0, strict=True)
    min_gain: float | None = Field(default=None, ge=0.0, strict=True)

    def policy_overrides(self) -> dict[str, Any]:
        """The knobs given, as Policy fields (the ones not given keep the configured value)."""
        return self.model_dump(include={"aggressiveness", "max_moves", "min_gain"}, exclude_none=True)


class PlaceRequest(Request):
    cpus: float = Field(ge=0.01, strict=True)
    memory: int = Field(ge=1, strict=True, description="MiB")
    disk: float = Field(ge=0.0, strict=True, description="GB")
    storage: str | None = None


class JobOptions(Request):
    approve: bool = Field(default=False, strict=True, description="the job may run at once (else it waits for approval)")
    window: bool = Field(default=False, strict=True, description="start moves only inside the configured maintenance windows")


class NodesJobRequest(JobOptions):
    """Plan now against the live fleet and store the plan as a job (evacuate, drain)."""

    nodes: list[str] = Field(min_length=1)


class PlanJobRequest(JobOptions):
    """Store a reviewed plan (contracts/plan.md) as a job."""

    plan: dict[str, Any]


class JobListRequest(Request):
    limit: int = Field(default=DEFAULT_JOB_LIMIT, ge=1, le=MAX_JOB_LIMIT)


class MaintenancePlanRequest(Request):
    """``ferry maintenance plan|run``, ``POST /v1/maintenance/plan``: a rolling campaign's calendar."""

    nodes: list[str] = Field(min_length=1, description="the nodes to maintain, in this order")
    windows: list[str] = Field(default_factory=list, description=(
        "maintenance windows ('sat 01:00 for 2h', 'Sat 01:00-03:00'); none: the configured [schedule] windows"))
    max_out: int = Field(default=1, ge=1, strict=True, description="nodes out of service at once, at most")
    maintenance: str = Field(default="1h", description="how long each node's maintenance lasts, e.g. 45min, 2h")
    start: str | None = Field(default=None, description="ISO 8601 instant the campaign may start (default: now)")
