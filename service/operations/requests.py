"""What a caller may ask of ferry: one pydantic model per verb, shared by the CLI and the REST API.

The API uses these models as its request bodies; the CLI builds the same model from its options.
Bounds, defaults and the wording of a refusal are therefore declared once, and a mistake reads the
same on both surfaces (``aggressiveness=9: Input should be less than or equal to 5``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.operations.request_fields import DEFAULT_JOB_LIMIT, DEFAULT_TIME_LIMIT_S, MAX_JOB_LIMIT, Solver
from service.operations.request_fields import DESCRIPTIONS as SAYS


class Request(BaseModel):
    """A request names only keys ferry knows: a typo is refused, never ignored. Figures and flags
    are strict: ``true`` is not a count, ``"5"`` is not a number."""

    model_config = ConfigDict(extra="forbid")


class SolverChoice(Request):
    solver: Solver = Field(default=Solver.greedy, description=SAYS["solver"])
    time_limit: float = Field(default=DEFAULT_TIME_LIMIT_S, ge=0.1, strict=True, description=SAYS["time_limit"])


class NodesPlanRequest(SolverChoice):
    nodes: list[str] = Field(min_length=1)


class RebalanceRequest(SolverChoice):
    aggressiveness: int | None = Field(default=None, ge=1, le=5, strict=True, description=SAYS["aggressiveness"])
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
    approve: bool = Field(default=False, strict=True, description=SAYS["approve"])
    window: bool = Field(default=False, strict=True, description=SAYS["window"])


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
    max_out: int = Field(default=1, ge=1, strict=True, description=SAYS["max_out"])
    maintenance: str = Field(default="1h", description=SAYS["maintenance"])
    start: str | None = Field(default=None, description=SAYS["start"])
