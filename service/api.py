"""ferry's REST API (FastAPI): the CLI's verbs over HTTP, with a bearer token and an OpenAPI document.

    request --bearer token (constant-time compare)--> route --> service.operations (as the CLI)
        --> plan JSON (the exact bytes of ``ferry plan ... --format json``) | job records | metrics
    InputError -> 400, no such job -> 404, JobConflict or drift -> 409, backend down -> 502:
        always {"error": "<the one line the CLI prints>"}
    service.api_gate, in front: the token before the body (401), JSON whatever the content type,
        an unexpected exception -> 500 {"error": "internal error (ref <id>)"}
    service.api_models: every answer's shape and every status code, in the OpenAPI document

Routes are plain ``def`` functions: FastAPI runs them in its thread pool, so the blocking store and
backends never stall the event loop. The worker that executes approved jobs is separate
(service.worker); the API only records decisions in the store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, status
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from adapters.base import BackendError
from fleet.errors import MISSING, InputError
from fleet.model import Inventory
from fleet.plan import Plan
from fleet.snapshot import dump_inventory, key_path, parse_inventory, validate_model
from service import operations as ops
from service.api_gate import UNAUTHORIZED, ApiGate
from service.api_models import (
    MAX_JOB_ID,
    ControlOut,
    HealthOut,
    InventoryOut,
    JobOut,
    JobSummaryOut,
    NothingToMoveOut,
    PlacementOut,
    PlanOut,
    errors,
)
from service.api_nodes import node_router
from service.api_users import user_router
from service.config import Config, check_private_file
from service.jobs import JobConflict, NoSuchJob
from service.metrics import store_registry
from service.runtime import Runtime
from service.users import identify
from service.web import install_console
from service.worker import instance_owner

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


# -- request bodies: the operations' requests, plus what only a body carries --------------------
class Offline(BaseModel):
    #: Plan offline from this snapshot (contracts/inventory.md) instead of the live fleet.
    inventory: dict[str, Any] | None = None


class NodesBody(ops.NodesPlanRequest, Offline):
    """``ferry plan evacuate|drain``'s request, with an optional snapshot."""


class RebalanceBody(ops.RebalanceRequest, Offline):
    """``ferry plan rebalance``'s request, with an optional snapshot."""


class PlaceBody(ops.PlaceRequest, Offline):
    """``ferry plan place``'s request, with an optional snapshot."""


# -- helpers ---------------------------------------------------------------------------------------
def _json_bytes(text_out: str) -> Response:
    return Response(content=text_out, media_type="application/json")


def _snapshot(body: Offline) -> Inventory | None:
    return None if body.inventory is None else parse_inventory(body.inventory, source="inventory")


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

    @app.exception_handler(ops.PlanDrift)
    def _drift(_: Request, exc: ops.PlanDrift) -> JSONResponse:
        return answer(status.HTTP_409_CONFLICT, exc.line(), changes=exc.changes)

    @app.exception_handler(NoSuchJob)
    def _missing(_: Request, exc: NoSuchJob) -> JSONResponse:
        return answer(status.HTTP_404_NOT_FOUND, exc.line())

    @app.exception_handler(InputError)
    def _input(_: Request, exc: InputError) -> JSONResponse:
        return answer(status.HTTP_400_BAD_REQUEST, exc.line())

    @app.exception_handler(RequestValidationError)
    def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if p not in ("body", "query", "path"))
        value = err.get("input") if err["type"] != "missing" else MISSING
        why = "is required" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        return answer(status.HTTP_400_BAD_REQUEST, InputError(key_path(loc), value, why).line())

    @app.exception_handler(HTTPException)
    def _http(_: Request, exc: HTTPException) -> JSONResponse:  # unknown route, unreadable body, ...
        return answer(exc.status_code, str(exc.detail))

    @app.exception_handler(BackendError)
    def _backend(_: Request, exc: BackendError) -> JSONResponse:
        return answer(status.HTTP_502_BAD_GATEWAY, f"the cluster did not answer as expected: {exc}")


def _bearer_check() -> Any:
    scheme = HTTPBearer(auto_error=False, description="a user's token (ferry user add), or the shared "
                        "token of [api] token_file / FERRY_API_TOKEN (an admin)")

    # A default, not an Annotated hint: hints are strings here and could not see the local ``scheme``.
    # The gate (service.api_gate) has checked the token and the role already; this declares the
    # scheme in the OpenAPI document and refuses a request that did not pass the gate.
    def check(request: Request, _: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:  # noqa: B008
        if getattr(request.state, "identity", None) is None:
            raise ApiError(status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED)

    return check


def actor_of(request: Request) -> str:
    """The name of whoever the gate let in (recorded beside what they decided)."""
    return request.state.identity.name


def _declare_errors_only(app: FastAPI) -> None:
    """The OpenAPI document without FastAPI's default 422: a malformed request answers 400."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()  # built once, then cached by FastAPI: the edit below is made once
        for path in document.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# -- the app ---------------------------------------------------------------------------------------
def create_app(runtime: Runtime, *, token: str | None = None) -> FastAPI:
    """The REST API over ``runtime``; ``token`` defaults to the configured one (see load_token)."""
    app = FastAPI(title="ferry", version="1", docs_url=None,  # /docs: service.web.assets, no CDN
                  description="Plan and run container migrations across Proxmox VE and OpenVZ nodes.")
    _install_error_handlers(app)
    token = token or load_token(runtime.config)
    shared = token
    app.add_middleware(ApiGate, token=token, identify=lambda given: identify(runtime.sessions, given, shared))
    _declare_errors_only(app)
    # The gate checks the token first; the dependency declares the scheme in the OpenAPI document.
    auth = [Depends(_bearer_check())]
    registry = store_registry(runtime.sessions, instance_owner(runtime))
    rt = runtime

    @app.get("/healthz", tags=["service"], response_model=None,
             responses={200: {"model": HealthOut}, 503: {"model": HealthOut, "description": "store unreachable"}})
    def healthz() -> JSONResponse:
        """Liveness and store reachability; needs no token (for load balancers and probes)."""
        try:
            with rt.sessions() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return JSONResponse({"status": "store unreachable", "error": exc.__class__.__name__}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["service"], dependencies=auth, response_class=Response,
             responses=errors(401, 500))
    def metrics() -> Response:
        """Prometheus text format, computed from the job store (service.metrics)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/inventory", tags=["fleet"], dependencies=auth, response_model=None,
             responses={200: {"model": InventoryOut}, **errors(401, 500, 502)})
    def inventory() -> Response:
        """The live fleet as a snapshot (contracts/inventory.md)."""
        return _json_bytes(dump_inventory(ops.current_inventory(rt)))

    plans: dict[int | str, Any] = {200: {"model": PlanOut}, **errors(400, 401, 500, 502)}

    @app.post("/v1/plans/evacuate", tags=["plans"], dependencies=auth, response_model=None, responses=plans)
    def plan_evacuate_route(body: NodesBody) -> Response:
        """Give every container on ``nodes`` a destination (contracts/plan.md)."""
        return _json_bytes(ops.plan_nodes(rt, "evacuate", body, _snapshot(body)).plan.to_json())

    @app.post("/v1/plans/drain", tags=["plans"], dependencies=auth, response_model=None, responses=plans)
    def plan_drain_route(body: NodesBody) -> Response:
        """Like evacuate, for maintenance."""
        return _json_bytes(ops.plan_nodes(rt, "drain", body, _snapshot(body)).plan.to_json())

    @app.post("/v1/plans/rebalance", tags=["plans"], dependencies=auth, response_model=None, responses=plans)
    def plan_rebalance_route(body: RebalanceBody) -> Response:
        """Spread load with few, cheap moves; knobs override the configured policy."""
        return _json_bytes(ops.plan_rebalancing(rt, body, _snapshot(body)).plan.to_json())

    @app.post("/v1/plans/place", tags=["plans"], dependencies=auth, response_model=None,
              responses={200: {"model": PlacementOut}, **errors(400, 401, 500, 502)})
    def plan_place_route(body: PlaceBody) -> dict[str, Any]:
        """The best node for a new container."""
        return ops.place_container(rt, body, _snapshot(body))

    _add_job_routes(app, rt, auth)
    install_console(app, rt, token)
    app.router.routes.extend(node_router(rt, auth).routes)  # as they are: app.routes lists them (test_surfaces)
    app.router.routes.extend(user_router(rt, auth).routes)
    return app


def _add_job_routes(app: FastAPI, rt: Runtime, auth: list[Any]) -> None:
    @app.get("/v1/jobs", tags=["jobs"], dependencies=auth, response_model=None,
             responses={200: {"model": list[JobSummaryOut]}, **errors(400, 401, 500)})
    def jobs(query: Annotated[ops.JobListRequest, Query()]) -> list[dict[str, Any]]:
        """Newest first, as ``ferry jobs --format json``."""
        return ops.list_jobs(rt, query.limit)

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], dependencies=auth, response_model=None,
             responses={200: {"model": JobOut}, **errors(400, 401, 404, 500)})
    def job(job_id: JobId) -> dict[str, Any]:
        """Moves, their steps and the journal, as ``ferry job show --format json``."""
        return ops.job_detail(rt, job_id)

    @app.post("/v1/jobs", tags=["jobs"], dependencies=auth, status_code=status.HTTP_201_CREATED,
              response_model=None, responses={201: {"model": JobOut}, **errors(400, 401, 409, 500, 502)})
    def new_job(body: ops.PlanJobRequest, request: Request) -> dict[str, Any]:
        """Store a reviewed plan as a job, after re-validating it against the live fleet (409 with
        ``changes`` when the fleet drifted). ``approve`` lets the worker run it."""
        plan = validate_model(Plan, body.plan, source="plan")
        return ops.job_detail(rt, ops.submit_plan(rt, plan, body, actor=actor_of(request)))

    def plan_and_store(goal: ops.NodeGoal, body: ops.NodesJobRequest, request: Request) -> Any:
        submitted = ops.submit_nodes(rt, goal, body, actor=actor_of(request))
        if submitted.job_id is None:  # as ``ferry evacuate``: nothing to move is an answer
            return JSONResponse({"job": None, "moves": 0}, status_code=status.HTTP_200_OK)
        return ops.job_detail(rt, submitted.job_id)

    nothing: dict[int | str, Any] = {
        200: {"model": NothingToMoveOut, "description": 'Nothing to move: `{"job": null, "moves": 0}`'},
        201: {"model": JobOut}, **errors(400, 401, 409, 500, 502)}

    @app.post("/v1/evacuate", tags=["jobs"], dependencies=auth, status_code=status.HTTP_201_CREATED,
              response_model=None, responses=nothing)
    def evacuate(body: ops.NodesJobRequest, request: Request) -> dict[str, Any]:
        """Plan the evacuation of ``nodes`` now and store it as a job (``approve``: the worker runs
        it at once); 200 with ``{"job": null}`` when there is nothing to move."""
        return plan_and_store("evacuate", body, request)

    @app.post("/v1/drain", tags=["jobs"], dependencies=auth, status_code=status.HTTP_201_CREATED,
              response_model=None, responses=nothing)
    def drain(body: ops.NodesJobRequest, request: Request) -> dict[str, Any]:
        """As evacuate, for maintenance (with ``window``: moves start only inside maintenance windows)."""
        return plan_and_store("drain", body, request)

    for action, doc in JOB_CONTROLS.items():
        app.post(f"/v1/jobs/{{job_id}}/{action}", tags=["jobs"], dependencies=auth,
                 name=action, description=doc, response_model=None,
                 responses={200: {"model": ControlOut}, **errors(400, 401, 404, 409, 500)})(_control_route(rt, action))


#: A job's id in a path: ids beyond the store's integer range are refused (400), never looked up.
JobId = Annotated[int, PathParam(ge=0, le=MAX_JOB_ID)]

#: The operator's controls of a job, each ``POST /v1/jobs/{job_id}/<action>`` (service.lifecycle.CONTROLS).
JOB_CONTROLS = {
    "approve": "A pending job becomes approved; the worker runs it.",
    "pause": "Start no new moves; moves in flight finish.",
    "resume": "A paused job is approved again; the worker continues it.",
    "cancel": "Start no more moves; moves in flight roll back.",
}


def _control_route(rt: Runtime, action: str) -> Any:
    def control(job_id: JobId, request: Request) -> dict[str, Any]:
        return ops.control(rt, job_id, action, actor=actor_of(request))

    control.__name__ = action
    return control
