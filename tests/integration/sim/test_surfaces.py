"""The CLI and the REST API offer the same verbs with the same options (service.operations.surfaces).

Every Typer command and group, and every FastAPI route, must be accounted for by the one table in
service.operations.surfaces: a twin on the other surface, or a stated reason why it has none. The
same for every option of a verb and every field of its route. Adding a command or a route (or an
option or a field) without its twin fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from service import cli
from service.api import create_app
from service.operations import surfaces
from service.runtime import Runtime
from tests.conftest import sim_config

Verb = tuple[str, ...]
Route = tuple[str, str]


# -- the CLI, walked --------------------------------------------------------------------------------
def cli_verbs(app: typer.Typer, path: Verb = ()) -> list[Verb]:
    """Every registered command, and every group that runs on its own (``ferry jobs``)."""
    verbs = [path + (info.name or info.callback.__name__.replace("_", "-"),) for info in app.registered_commands]
    for group in app.registered_groups:
        sub = group.typer_instance
        name = path + (group.name or sub.info.name,)
        if group.invoke_without_command or sub.info.invoke_without_command:
            verbs.append(name)
        verbs += cli_verbs(sub, name)
    return verbs


def cli_command(verb: Verb) -> Any:
    command = typer.main.get_command(cli.app)
    for name in verb:
        command = command.commands[name]
    return command


def public_name(param: Any) -> str:
    """``--time-limit`` -> ``time_limit``; an argument by its own name (``nodes``, ``job_id``)."""
    if param.param_type_name != "option":
        return param.name
    longest = max((opt for opt in param.opts if opt.startswith("--")), key=len)
    return longest.removeprefix("--").replace("-", "_")


def cli_options(verb: Verb) -> set[str]:
    return {public_name(p) for p in cli_command(verb).params if p.name != "help"}


# -- the API, walked --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(Runtime(sim_config(tmp_path_factory.mktemp("surfaces"))), token="t" * 32)


def api_routes(app: FastAPI) -> dict[Route, Any]:
    routes: dict[Route, Any] = {}
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                routes[(method, route.path)] = route
    return routes


def api_fields(route: APIRoute) -> set[str]:
    """Path and query parameters and body fields; a pydantic model parameter by its fields."""
    dependant = route.dependant
    fields: set[str] = set()
    for param in dependant.path_params + dependant.query_params + dependant.body_params:
        annotation = param.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields |= set(annotation.model_fields)
        else:
            fields.add(param.name)
    return fields


# -- the checks -------------------------------------------------------------------------------------
def test_every_cli_verb_has_its_route_or_a_reason() -> None:
    verbs = cli_verbs(cli.app)
    assert len(verbs) == len(set(verbs))
    assert set(surfaces.TWINS) | set(surfaces.CLI_ONLY_VERBS) == set(verbs), (
        "declare each CLI verb in service/operations/surfaces.py, with its route or why it has none")
    assert not set(surfaces.TWINS) & set(surfaces.CLI_ONLY_VERBS)
    assert all(reason.strip() for reason in surfaces.CLI_ONLY_VERBS.values())


def test_every_route_has_its_cli_verb_or_a_reason(api_app: FastAPI) -> None:
    routes = set(api_routes(api_app))
    twins = set(surfaces.TWINS.values())
    assert len(twins) == len(surfaces.TWINS), "one route per verb"
    assert twins | set(surfaces.API_ONLY_ROUTES) == routes, (
        "declare each route in service/operations/surfaces.py, with its CLI verb or why it has none")
    assert not twins & set(surfaces.API_ONLY_ROUTES)
    assert all(reason.strip() for reason in surfaces.API_ONLY_ROUTES.values())


@pytest.mark.parametrize("verb", sorted(surfaces.TWINS), ids=" ".join)
def test_a_verb_takes_the_same_options_on_both_surfaces(api_app: FastAPI, verb: Verb) -> None:
    route = api_routes(api_app)[surfaces.TWINS[verb]]
    options = {surfaces.RENAMED.get(name, name) for name in cli_options(verb) - set(surfaces.CLI_ONLY_OPTIONS)}
    fields = api_fields(route) - set(surfaces.API_ONLY_FIELDS)
    assert options - fields == set(), f"CLI options of {' '.join(verb)} with no field in {route.path}"
    assert fields - options == set(), f"fields of {route.path} with no option in ferry {' '.join(verb)}"


def test_surface_only_options_are_used_and_explained() -> None:
    used = set().union(*(cli_options(verb) for verb in surfaces.TWINS))
    assert set(surfaces.CLI_ONLY_OPTIONS) <= used and set(surfaces.RENAMED) <= used
    assert all(reason.strip() for reason in surfaces.CLI_ONLY_OPTIONS.values())


# -- the checks catch what they are for ------------------------------------------------------------
def test_a_command_added_without_its_route_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = typer.Typer()
    extra.command("one")(lambda: None)
    extra.command("two")(lambda: None)
    monkeypatch.setattr(cli.app, "registered_commands", cli.app.registered_commands + extra.registered_commands)
    with pytest.raises(AssertionError, match="declare each CLI verb"):
        test_every_cli_verb_has_its_route_or_a_reason()


def test_a_route_added_without_its_verb_is_caught(tmp_path: Path) -> None:
    app = create_app(Runtime(sim_config(tmp_path)), token="t" * 32)
    app.post("/v1/jobs/{job_id}/retry")(lambda job_id: None)
    with pytest.raises(AssertionError, match="declare each route"):
        test_every_route_has_its_cli_verb_or_a_reason(app)


def test_an_option_without_its_field_is_caught(api_app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(surfaces, "TWINS", {**surfaces.TWINS, ("plan", "place"): ("POST", "/v1/plans/rebalance")})
    with pytest.raises(AssertionError, match="CLI options of plan place"):
        test_a_verb_takes_the_same_options_on_both_surfaces(api_app, ("plan", "place"))
