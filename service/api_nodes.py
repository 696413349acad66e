"""``/v1/nodes``: a node's lifecycle over HTTP, the twin of ``ferry node …`` (service.cli_node).

    GET  /v1/nodes                          every node and its state
    POST /v1/nodes/{node}/cordon|uncordon   {node, from, state}
    POST /v1/nodes/{node}/drain             {approve, window} -> the drain job (201), or nothing to move (200)
    POST /v1/nodes/{node}/restore           {approve} -> {node, job, moves, stay}
    POST /v1/maintenance/plan               {nodes, windows, max_out, maintenance, start} -> the calendar

Included by service.api.create_app behind the same token and error answers; a state that refuses
the verb answers 409, an unknown node 400, in the CLI's words.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from service import operations as ops
from service.api_models import JobOut, NothingToMoveOut, errors
from service.campaigns import MaintenancePlanRequest, plan_maintenance
from service.nodes import NodeEvent
from service.operations import nodes as node_ops
from service.runtime import Runtime

NodeName = Annotated[str, PathParam(max_length=64, description="the node's name, as in the inventory")]


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
    from_: str = Field(alias="from", description="the state before the change")
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

    return router
