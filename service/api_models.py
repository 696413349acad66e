"""What ferry's REST API answers, as pydantic models: the OpenAPI document states every answer's
shape and every status code a route gives, so a schema-based client or fuzzer can check them.

The models name the keys every answer has and their types; they allow more keys, because the
documents they describe (contracts/plan.md, contracts/inventory.md, a job's record) may grow.
"""

from __future__ import annotations

from typing import Any

from fastapi import status
from pydantic import BaseModel, ConfigDict, Field

#: The largest job id the store holds (a signed 64-bit integer); a larger one is refused with 400.
MAX_JOB_ID = 2**63 - 1


class Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ErrorOut(Open):
    """Every answer other than 2xx: the one line the CLI prints (409 on drift adds ``changes``)."""

    error: str


class HealthOut(Open):
    status: str
    error: str | None = None


class InventoryOut(Open):
    """contracts/inventory.md."""

    version: int
    nodes: list[dict[str, Any]]
    containers: list[dict[str, Any]]


class PlanOut(Open):
    """contracts/plan.md: the exact bytes of ``ferry plan ... --format json``."""

    version: int
    goal: dict[str, Any]
    inventory_digest: str
    moves: list[dict[str, Any]]


class PlacementOut(Open):
    best: str | None
    candidates: list[Any]
    rejected: list[Any]


class JobSummaryOut(Open):
    """One line of ``ferry jobs --format json``."""

    id: int
    kind: str
    state: str
    moves: int
    done: int
    created_at: str


class MoveOut(Open):
    ct: str
    from_: str = Field(alias="from")
    to: str
    state: str


class ActionOut(Open):
    action: str
    by: str
    at: str


class JobOut(Open):
    """``ferry job show --format json``: the job, its moves and its journal."""

    id: int
    kind: str
    state: str
    created_at: str
    moves: list[MoveOut]
    journal: list[dict[str, Any]]
    window: bool
    #: Who approved, rejected, paused, resumed or cancelled it, and when (UTC), oldest first.
    actions: list[ActionOut] = []


class NothingToMoveOut(Open):
    job: None = None
    moves: int


class ControlOut(Open):
    """A control's answer: the job's state before and after."""

    id: int
    from_: str = Field(alias="from")
    state: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route gives, for its ``responses=`` (401 on every route but /healthz)."""
    why = {status.HTTP_400_BAD_REQUEST: "a malformed or out-of-bounds request",
           status.HTTP_401_UNAUTHORIZED: "no valid bearer token",
           status.HTTP_403_FORBIDDEN: "the token's user lacks the role the route needs",
           status.HTTP_404_NOT_FOUND: "no such job",
           status.HTTP_409_CONFLICT: "the job's state refuses it, or the fleet drifted from the plan",
           status.HTTP_500_INTERNAL_SERVER_ERROR: "an unexpected error, logged under the ref given",
           status.HTTP_502_BAD_GATEWAY: "the cluster did not answer as expected"}
    codes += (status.HTTP_403_FORBIDDEN,) if status.HTTP_401_UNAUTHORIZED in codes else ()
    return {code: {"model": ErrorOut, "description": why[code]} for code in codes}
