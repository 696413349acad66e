"""ferry's REST API (FastAPI): the CLI's verbs over HTTP, with a bearer token and an OpenAPI document.

    request --bearer token (constant-time compare)--> route --> planners / service.jobs / Runtime
        --> plan JSON (the exact bytes of ``ferry plan ... --format json``) | job records | metrics
    InputError -> 400, no such job -> 404, JobConflict or drift -> 409, backend down -> 502:
        always {"error": "<the one line the CLI prints>"}

Routes are plain ``def`` functions: FastAPI runs them in its thread pool, so the blocking store and
backends never stall the event loop. The worker that executes approved jobs is separate
(service.worker); the API only records decisions in the store.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from adapters.base import BackendError
from fleet.errors import InputError
from fleet.model import Inventory
from fleet.plan import Plan
from fleet.policy import Policy
from fleet.snapshot import dump_inventory, key_path, parse_inventory, validate_model
from planners import place, plan_drain, plan_evacuate, plan_rebalance
from service.config import Config, check_private_file
from service.jobs import JobConflict, NoSuchJob, control_job, create_job, job_detail, list_jobs
from service.metrics import store_registry
from service.runtime import Runtime
from service.worker import instance_owner, with_window

#: Shortest token accepted: a guessable token is no protection.
MIN_TOKEN_CHARS = 16


class ApiError(Exception):
    """An answer other than 2xx, carrying the one-line message of the CLI."""

    def __init__(self, status_code: int, line: str, **extra: Any) -> None:
        super().__init__(line)
        self.status_code, self.line, self.extra = status_code, line, extra


def load_token(config: Config) -> str:
    """FERRY_API_TOKEN, else the content of ``[api] token_file``; refuse to serve without one."""
    token = os.environ.get("FERRY_API_TOKEN", "").strip()
    key, value = "FERRY_API_TOKEN", "(set)"
    if not token and config.api.token_file:
        path = Path(config.api.token_file)
        if not path.is_absolute() and config.path is not None:
            path = config.path.parent / path
        key, value = "api.token_file", str(path)
        try:
            check_private_file(path, key)
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(key, value, f"cannot read the API token: {exc.__class__.__name__}") from None
    if not token:
        raise InputError("api.token_file", config.api.token_file,
                         "no API token: set [api] token_file or FERRY_API_TOKEN")
    if len(token) < MIN_TOKEN_CHARS:
        raise InputError(key, value, f"the API token is shorter than {MIN_TOKEN_CHARS} characters")
    return token


# -- request bodies --------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Plan offline from this snapshot (contracts/inventory.md) instead of the live fleet.
    inventory: dict[str, Any] | None = None


class NodesBody(_Body):
    nodes: list[str] = Field(min_length=1)


class RebalanceBody(_Body):
    aggressiveness: int | None = Field(default=None, ge=1, le=5)
    max_moves: int | None = Field(default=None, ge=0)
    min_gain: float | None = Field(default=None, ge=0.0)


class PlaceBody(_Body):
    cpus: float = Field(ge=0.01)
    memory: int = Field(ge=1, description="MiB")
    disk: float = Field(ge=0.0, description="GB")
    storage: str | None = None


class NewJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: dict[str, Any]
    approve: bool = False
    #: Start moves only inside the configured maintenance windows.
    window: bool = False


# -- helpers ---------------------------------------------------------------------------------------
def _json_bytes(text_out: str) -> Response:
    return Response(content=text_out, media_type="application/json")


def _inventory(rt: Runtime, body: _Body) -> Inventory:
    if body.inventory is not None:
        return parse_inventory(body.inventory, source="inventory")
    return rt.backend.discover()


def _policy(rt: Runtime, body: _Body) -> Policy:
    """As the CLI: an offline plan uses the configured policy alone (same snapshot, same plan);
    a live one adds link speeds learned from finished moves."""
    return rt.config.policy if body.inventory is not None else rt.policy()


def _detail(rt: Runtime, job_id: int) -> dict[str, Any]:
    try:
        return job_detail(rt.sessions, job_id)
    except InputError as exc:
        raise ApiError(status.HTTP_404_NOT_FOUND, exc.line()) from None


def _control(rt: Runtime, job_id: int, action: str) -> dict[str, Any]:
    """Change a job's state with the rule and message of ``ferry job ...``."""
    try:
        old, new = control_job(rt.sessions, job_id, action)
    except NoSuchJob as exc:
        raise ApiError(status.HTTP_404_NOT_FOUND, exc.line()) from None
    return {"id": job_id, "from": old, "state": new}


def _install_error_handlers(app: FastAPI) -> None:
    def answer(code: int, line: str, **extra: Any) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if code == status.HTTP_401_UNAUTHORIZED else None
        return JSONResponse({"error": line, **extra}, status_code=code, headers=headers)

    @app.exception_handler(ApiError)
    def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return answer(exc.status_code, exc.line, **exc.extra)

    @app.exception_handler(JobConflict)
    def _conflict(_: Request, exc: JobConflict) -> JSONResponse:
        return answer(status.HTTP_409_CONFLICT, exc.line())

    @app.exception_handler(InputError)
    def _input(_: Request, exc: InputError) -> JSONResponse:
        return answer(status.HTTP_400_BAD_REQUEST, exc.line())

    @app.exception_handler(RequestValidationError)
    def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if p not in ("body", "query", "path"))
        value = err.get("input") if err["type"] != "missing" else None
        why = "is required" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        return answer(status.HTTP_400_BAD_REQUEST, InputError(key_path(loc), value, why).line())

    @app.exception_handler(BackendError)
    def _backend(_: Request, exc: BackendError) -> JSONResponse:
        return answer(status.HTTP_502_BAD_GATEWAY, f"the cluster did not answer as expected: {exc}")


def _bearer_check(token: str) -> Any:
    scheme = HTTPBearer(auto_error=False, description="the token of [api] token_file / FERRY_API_TOKEN")
    expected = token.encode()

    # A default, not an Annotated hint: hints are strings here and could not see the local ``scheme``.
    def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:  # noqa: B008
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, expected):  # constant time: no length/prefix oracle
            raise ApiError(status.HTTP_401_UNAUTHORIZED, "authorization: a valid bearer token is required")

    return check


# -- the app ---------------------------------------------------------------------------------------
def create_app(runtime: Runtime, *, token: str | None = None) -> FastAPI:
    """The REST API over ``runtime``; ``token`` defaults to the configured one (see load_token)."""
    app = FastAPI(title="ferry", version="1",
                  description="Plan and run container migrations across Proxmox VE and OpenVZ nodes.")
    _install_error_handlers(app)
    auth = [Depends(_bearer_check(token or load_token(runtime.config)))]
    registry = store_registry(runtime.sessions, instance_owner(runtime))
    rt = runtime

    @app.get("/healthz", tags=["service"])
    def healthz() -> JSONResponse:
        """Liveness and store reachability; needs no token (for load balancers and probes)."""
        try:
            with rt.sessions() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return JSONResponse({"status": "store unreachable", "error": exc.__class__.__name__}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["service"], dependencies=auth, response_class=Response)
    def metrics() -> Response:
        """Prometheus text format, computed from the job store (service.metrics)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/inventory", tags=["fleet"], dependencies=auth)
    def inventory() -> Response:
        """The live fleet as a snapshot (contracts/inventory.md)."""
        return _json_bytes(dump_inventory(rt.backend.discover()))

    @app.post("/v1/plans/evacuate", tags=["plans"], dependencies=auth)
    def plan_evacuate_route(body: NodesBody) -> Response:
        """Give every container on ``nodes`` a destination (contracts/plan.md)."""
        return _json_bytes(plan_evacuate(_inventory(rt, body), body.nodes, _policy(rt, body)).to_json())

    @app.post("/v1/plans/drain", tags=["plans"], dependencies=auth)
    def plan_drain_route(body: NodesBody) -> Response:
        """Like evacuate, for maintenance."""
        return _json_bytes(plan_drain(_inventory(rt, body), body.nodes, _policy(rt, body)).to_json())

    @app.post("/v1/plans/rebalance", tags=["plans"], dependencies=auth)
    def plan_rebalance_route(body: RebalanceBody) -> Response:
        """Spread load with few, cheap moves; knobs override the configured policy."""
        knobs = body.model_dump(exclude_none=True, exclude={"inventory"})
        policy = _policy(rt, body).model_copy(update=knobs)
        moved, now = rt.cooldown_inputs() if body.inventory is None else ({}, None)
        return _json_bytes(plan_rebalance(_inventory(rt, body), policy, last_moved=moved, now=now).to_json())

    @app.post("/v1/plans/place", tags=["plans"], dependencies=auth)
    def plan_place_route(body: PlaceBody) -> dict[str, Any]:
        """The best node for a new container."""
        return place(_inventory(rt, body), _policy(rt, body), cpus=body.cpus, memory_mb=body.memory,
                     disk_gb=body.disk, storage=body.storage).to_dict()

    _add_job_routes(app, rt, auth)
    return app


def _add_job_routes(app: FastAPI, rt: Runtime, auth: list[Any]) -> None:
    @app.get("/v1/jobs", tags=["jobs"], dependencies=auth)
    def jobs(limit: Annotated[int, Query(ge=1, le=10_000)] = 50) -> list[dict[str, Any]]:
        """Newest first, as ``ferry jobs --format json``."""
        return list_jobs(rt.sessions, limit=limit)

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], dependencies=auth)
    def job(job_id: int) -> dict[str, Any]:
        """Moves, their steps and the journal, as ``ferry job show --format json``."""
        return _detail(rt, job_id)

    @app.post("/v1/jobs", tags=["jobs"], dependencies=auth, status_code=status.HTTP_201_CREATED)
    def new_job(body: NewJob) -> dict[str, Any]:
        """Store a reviewed plan as a job, after re-validating it against the live fleet (409 with
        ``changes`` when the fleet drifted). ``approve`` lets the worker run it."""
        plan = validate_model(Plan, body.plan, source="plan")
        if not plan.moves:
            raise InputError("plan.moves", [], "the plan moves nothing: there is no job to run")
        problems = rt.drift(plan, rt.backend.discover())
        if problems:
            raise ApiError(status.HTTP_409_CONFLICT, InputError(
                "plan", plan.inventory_digest, f"the fleet changed since it was made: {problems[0]} "
                f"({len(problems)} problems); make a new plan").line(), changes=problems)
        job_id = create_job(rt.sessions, with_window(plan) if body.window else plan, approved=body.approve)
        return _detail(rt, job_id)

    @app.post("/v1/jobs/{job_id}/approve", tags=["jobs"], dependencies=auth)
    def approve(job_id: int) -> dict[str, Any]:
        """A pending job becomes approved; the worker runs it."""
        return _control(rt, job_id, "approve")

    @app.post("/v1/jobs/{job_id}/pause", tags=["jobs"], dependencies=auth)
    def pause(job_id: int) -> dict[str, Any]:
        """Start no new moves; moves in flight finish."""
        return _control(rt, job_id, "pause")

    @app.post("/v1/jobs/{job_id}/resume", tags=["jobs"], dependencies=auth)
    def resume(job_id: int) -> dict[str, Any]:
        """A paused job is approved again; the worker continues it."""
        return _control(rt, job_id, "resume")

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"], dependencies=auth)
    def cancel(job_id: int) -> dict[str, Any]:
        """Start no more moves; moves in flight roll back."""
        return _control(rt, job_id, "cancel")
