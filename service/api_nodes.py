"""``/v1/nodes``: a node's lifecycle over HTTP, the twin of ``ferry node …`` (service.cli_node).

    GET  /v1/nodes                          every node and its state
    POST /v1/nodes/{node}/cordon|uncordon   {node, from, state}
    POST /v1/nodes/{node}/drain             {approve, window} -> the drain job (201), or nothing to move (200)
    POST /v1/nodes/{node}/restore           {approve} -> {node, job, moves, stay}
    POST /v1/maintenance/plan               {nodes, windows, max_out, maintenance, start} -> the calendar
    GET|POST /v1/maintenance/campaigns      saved campaigns | {…plan's fields, approve} -> the campaign (201)
    GET  /v1/maintenance/campaigns/{id}     its groups' phases, jobs, hooks; predicted vs actual end
    POST /v1/maintenance/campaigns/{id}/approve|pause|resume|cancel   {id, from, state}

Included by service.api.create_app behind the same token and error answers; a state that refuses
the verb answers 409, an unknown node 400, in the CLI's words.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from service import campaign_ops
from service import operations as ops
from service.api_models import MAX_JOB_ID, JobOut, NothingToMoveOut, errors
from service.campaigns import MaintenancePlanRequest, plan_maintenance
from service.nodes import NodeEvent
from service.operations import nodes as node_ops
from service.runtime import Runtime

NodeName = Annotated[str, PathParam(max_length=64, description="the node's name, as in the inventory")]
CampaignId = Annotated[int, PathParam(ge=0, le=MAX_JOB_ID, description="the campaign's id, as in the list")]


class NodeOut(BaseModel):
    node: str
    state: str
    job: int | None
    message: str
    containers: int
    ha_maintenance: bool


class NodeChangeOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    node: str
    from_: str = Field(alias="from", description="the state before the change (equal to state: it was so already, nothing changed)")
    state: str


class StayOut(BaseModel):
    ct: str
    reason: str


class RestoreOut(BaseModel):
    node: str
    job: int | None
    moves: list[str]
    stay: list[StayOut]


def node_router(rt: Runtime, auth: list[Any]) -> APIRouter:
    """The node routes over ``rt``, each behind ``auth`` (the API's bearer dependency)."""
    router = APIRouter(prefix="/v1", tags=["nodes"], dependencies=auth)
    change_answers: dict[int | str, Any] = {200: {"model": NodeChangeOut}, **errors(400, 401, 409, 500, 502)}

    @router.get("/nodes", response_model=None, responses={200: {"model": list[NodeOut]}, **errors(401, 500, 502)})
    def nodes() -> list[dict[str, Any]]:
        """Every node with its lifecycle state, as ``ferry node list --format json``."""
        return node_ops.list_nodes(rt)

    @router.post("/nodes/{node}/cordon", response_model=None, responses=change_answers)
    def cordon(node: NodeName) -> dict[str, Any]:
        """The node receives nothing from any plan; its containers stay."""
        return node_ops.change(rt, node, NodeEvent.CORDON)

    @router.post("/nodes/{node}/uncordon", response_model=None, responses=change_answers)
    def uncordon(node: NodeName) -> dict[str, Any]:
        """The node receives containers again (nobody is brought back)."""
        return node_ops.change(rt, node, NodeEvent.UNCORDON)

    @router.post("/nodes/{node}/drain", status_code=status.HTTP_201_CREATED, response_model=None, responses={
        200: {"model": NothingToMoveOut, "description": 'Nothing to move: `{"job": null, "moves": 0}`'},
        201: {"model": JobOut}, **errors(400, 401, 409, 500, 502)})
    def drain(node: NodeName, body: node_ops.NodeDrainRequest) -> Any:
        """Cordon the node and store the job that moves its containers away (``window``: moves
        start only when they fit in a maintenance window)."""
        submitted = node_ops.drain_node(rt, node, body)
        if submitted.job_id is None:
            return JSONResponse({"job": None, "moves": 0}, status_code=status.HTTP_200_OK)
        return ops.job_detail(rt, submitted.job_id)

    @router.post("/nodes/{node}/restore", response_model=None,
                 responses={200: {"model": RestoreOut}, **errors(400, 401, 409, 500, 502)})
    def restore(node: NodeName, body: node_ops.NodeRestoreRequest) -> dict[str, Any]:
        """Store the job that brings back the containers that left the node; the ones moved or
        changed since are listed in ``stay`` and stay where they are."""
        return node_ops.restore_node(rt, node, body).to_dict()

    @router.post("/maintenance/plan", response_model=None, responses={
        200: {"description": "the calendar, as `ferry maintenance plan --format json`"},
        **errors(400, 401, 500, 502)})
    def maintenance_plan(body: MaintenancePlanRequest) -> dict[str, Any]:
        """The calendar of a rolling maintenance: each group's drain in windows, its maintenance,
        the return of its containers, and the predicted end (nothing is stored or moved)."""
        return plan_maintenance(rt, body).to_dict()

    add_campaign_routes(router, rt)
    return router


def add_campaign_routes(router: APIRouter, rt: Runtime) -> None:
    """The saved campaigns (service.campaign_ops), run by ``ferry serve``."""
    prefix = "/maintenance/campaigns"

    @router.get(prefix, response_model=None, responses={200: {"description": "as `ferry maintenance list`"},
                                                        **errors(401, 500)})
    def campaigns() -> list[dict[str, Any]]:
        """Saved campaigns, newest first."""
        return campaign_ops.list_campaigns(rt)

    @router.post(prefix, status_code=status.HTTP_201_CREATED, response_model=None, responses={
        201: {"description": "the campaign, as `ferry maintenance show`"}, **errors(400, 401, 500, 502)})
    def create(body: campaign_ops.CampaignCreateRequest) -> dict[str, Any]:
        """Plan a campaign and save it (pending unless ``approve``); ``ferry serve`` runs it."""
        return campaign_ops.create_campaign(rt, body)

    @router.get(prefix + "/{campaign_id}", response_model=None, responses={
        200: {"description": "as `ferry maintenance show --format json`"}, **errors(400, 401, 404, 500)})
    def show(campaign_id: CampaignId) -> dict[str, Any]:
        """Each group's phase, its jobs' progress and hooks; the predicted and actual end."""
        return campaign_ops.show_campaign(rt, campaign_id)

    for action in ("approve", "pause", "resume", "cancel"):
        router.post(prefix + "/{campaign_id}/" + action, response_model=None, name=f"campaign_{action}",
                    responses={200: {"model": NodeChangeOut}, **errors(400, 401, 404, 409, 500)})(
            _campaign_control(rt, action))


def _campaign_control(rt: Runtime, action: str) -> Any:
    def control(campaign_id: CampaignId) -> dict[str, Any]:
        return campaign_ops.control_campaign(rt, campaign_id, action)

    control.__name__ = f"campaign_{action}"
    control.__doc__ = f"{action.capitalize()} the campaign (as `ferry maintenance {action}`)."
    return control
