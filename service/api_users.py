"""``/v1/users``: the people (and scripts) that may use the API and the console, for admins; the
twin of ``ferry user add|list|revoke`` (service.cli_user).

    GET  /v1/users                 every user: name, role, created, revoked (never a token)
    POST /v1/users                 {name, role} -> 201 {name, role, token}: the token, shown once
    POST /v1/users/{name}/revoke   -> {name, role, created_at, revoked_at}: token and sessions stop now

The gate (service.api_gate.ROUTE_ROLES) lets only an admin's token reach these routes: a viewer or
an operator gets a one-line 403 before any of this runs. A taken name answers 409, an unknown one
404, a malformed name or role 400, each one line in the CLI's words.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from fleet.errors import InputError
from service import users
from service.api_models import errors
from service.operations.requests import Request
from service.roles import Role
from service.runtime import Runtime

UserName = Annotated[str, PathParam(max_length=64, description="the user's name, as in GET /v1/users")]


class UserAddRequest(Request):
    """``ferry user add NAME --role ROLE``: a new user and its token."""

    name: str = Field(max_length=64, description="lower-case letters, digits, '.', '_' or '-'")
    role: Role = Field(default=Role.viewer, description="viewer: read; operator: also plan, approve, pause, "
                                                        "cancel; admin: also users")


class UserOut(BaseModel):
    name: str
    role: str
    created_at: str = Field(description="UTC, ISO 8601")
    revoked_at: str | None = Field(description="UTC, ISO 8601; null while the token works")


class NewUserOut(BaseModel):
    name: str
    role: str
    token: str = Field(description="the user's bearer token: shown this once, only its hash is kept")


def _refusal(code: int, exc: InputError) -> JSONResponse:
    return JSONResponse({"error": exc.line()}, status_code=code)


def user_router(rt: Runtime, auth: list[Any]) -> APIRouter:
    """The user routes over ``rt``'s store, each behind ``auth`` (the API's bearer dependency)."""
    router = APIRouter(prefix="/v1", tags=["users"], dependencies=auth)

    @router.get("/users", response_model=None, responses={200: {"model": list[UserOut]}, **errors(401, 500)})
    def list_users() -> list[dict[str, Any]]:
        """Every user, its role and whether its token was revoked (as ``ferry user list --format json``)."""
        return users.list_users(rt.sessions)

    @router.post("/users", status_code=status.HTTP_201_CREATED, response_model=None, responses={
        201: {"model": NewUserOut}, **errors(400, 401, 409, 500)})
    def add_user(body: UserAddRequest) -> Any:
        """Create a user; the answer holds its token, which is never shown again."""
        try:
            token = users.add_user(rt.sessions, body.name, body.role)
        except users.UserExists as exc:
            return _refusal(status.HTTP_409_CONFLICT, exc)
        return {"name": body.name, "role": body.role.value, "token": token}

    @router.post("/users/{name}/revoke", response_model=None, responses={
        200: {"model": UserOut}, **errors(400, 401, 404, 500)})
    def revoke_user(name: UserName) -> Any:
        """Stop the user's token and console sessions at once; the user stays listed, as revoked."""
        try:
            users.revoke_user(rt.sessions, name)
        except users.NoSuchUser as exc:
            return _refusal(status.HTTP_404_NOT_FOUND, exc)
        return next(u for u in users.list_users(rt.sessions) if u["name"] == name)

    return router
