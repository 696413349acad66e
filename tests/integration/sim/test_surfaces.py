"""The CLI and the REST API offer the same verbs with the same options (service.operations.surfaces).

Every Typer command and group, and every FastAPI route, must be accounted for by the one table in
service.operations.surfaces: a twin on the other surface, or a stated reason why it has none. The
same for every option of a verb and every field of its route. Adding a command or a route (or an
option or a field) without its twin fails here.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

import planners
from fleet.plan import Plan
from fleet.policy import Policy
from fleet.snapshot import load_inventory, read_document
from planners import check_plan
from service import cli
from service.api import create_app
from service.config import load_config
from service.jobs import get_job
from service.operations import surfaces
from service.runtime import Runtime
from service.worker import Worker
from tests.conftest import SMALL_FLEET, sim_config
from tests.integration.sim.test_api import client_for
from tests.integration.sim.test_cli import assert_one_line_error, ferry, write_config
from tests.integration.sim.test_sim_engine import make_plan

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


# -- the same answers and the same refusals from both surfaces --------------------------------------
def test_a_rebalance_with_cp_sat_and_a_time_limit_is_the_same_plan_on_both_surfaces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = ("--aggressiveness", "5", "--solver", "cp-sat", "--time-limit", "2.5")
    cli_plan = ferry("plan", "rebalance", "--inventory", str(SMALL_FLEET), "--format", "json", *options).stdout
    asked: list[dict[str, Any]] = []
    real = planners.plan_rebalance  # looked up when a plan is asked for (the planners load lazily)
    monkeypatch.setattr(planners, "plan_rebalance", lambda *a, **kw: asked.append(kw) or real(*a, **kw))
    body = {"aggressiveness": 5, "solver": "cp-sat", "time_limit": 2.5, "inventory": read_document(SMALL_FLEET)}
    answer = client_for(Runtime(sim_config(tmp_path))).post("/v1/plans/rebalance", json=body)
    assert answer.status_code == 200 and answer.content == cli_plan.encode()
    assert [(kw["solver"], kw["time_limit_s"]) for kw in asked] == [("cp-sat", 2.5)]
    plan = Plan.model_validate(answer.json())
    assert plan.moves and check_plan(load_inventory(SMALL_FLEET), plan, Policy()) == []


@pytest.mark.parametrize(("argv", "route", "body"), [
    (("plan", "rebalance", "--aggressiveness", "9"), "/v1/plans/rebalance", {"aggressiveness": 9}),
    (("plan", "rebalance", "--solver", "magic"), "/v1/plans/rebalance", {"solver": "magic"}),
    (("plan", "drain", "a", "--time-limit", "0"), "/v1/plans/drain", {"nodes": ["a"], "time_limit": 0.0}),
    (("plan", "evacuate", "zz"), "/v1/plans/evacuate", {"nodes": ["zz"]}),
    (("plan", "place", "--cpus", "0", "--memory", "64", "--disk", "1"), "/v1/plans/place",
     {"cpus": 0.0, "memory": 64, "disk": 1.0}),
    (("job", "approve", "7"), "/v1/jobs/7/approve", None),
])
def test_a_mistake_reads_the_same_on_both_surfaces(tmp_path: Path, argv: tuple[str, ...], route: str,
                                                   body: Any) -> None:
    config = write_config(tmp_path)
    result = ferry(*argv, config=config, check=False)
    assert_one_line_error(result)
    answer = client_for(Runtime(load_config(config))).post(route, json=body)
    assert 400 <= answer.status_code < 500
    assert result.stderr.strip() == f"ferry: error: {answer.json()['error']}"


def test_a_drifted_plan_is_refused_in_the_same_words(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    stale = make_plan([("101", "c", "live")], source="b")
    (tmp_path / "stale.json").write_text(stale.to_json())
    result = ferry("run", str(tmp_path / "stale.json"), "--yes", config=config, check=False)
    assert_one_line_error(result, "container 101 is now on a")
    answer = client_for(Runtime(load_config(config))).post("/v1/jobs", json={"plan": stale.to_dict()})
    assert answer.status_code == 409 and answer.json()["changes"] == ["container 101 is now on a, the plan expects b"]
    assert result.stderr.strip() == f"ferry: error: {answer.json()['error']}"


# -- windows, evacuate / drain and approval on both surfaces -----------------------------------------
def closed_window() -> str:
    """A half-hour window twelve hours from now: closed for the whole test."""
    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)
    return f"{at:%a} {at.hour:02d}:00-{at.hour:02d}:30"


def test_run_with_window_stores_a_windowed_job_that_waits_for_its_window(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    plan_file = tmp_path / "plan.json"
    ferry("plan", "evacuate", "a", "--out", str(plan_file), "--format", "json", config=config)
    config.write_text(config.read_text() + f'[schedule]\nwindows = ["{closed_window()}"]\n')
    waited = ferry("run", str(plan_file), "--window", "--yes", "--format", "json", config=config, check=False)
    assert waited.returncode == 5, waited.stderr  # a job left waiting is not reported as done
    summary = json.loads(waited.stdout)
    moves = len(json.loads(plan_file.read_text())["moves"])
    assert summary["counts"] == {"pending": moves}  # no move started
    detail = json.loads(ferry("job", "show", str(summary["job_id"]), "--format", "json", config=config).stdout)
    assert detail["window"] is True and detail["state"] == "approved"
    assert "waiting for a maintenance window" in detail["message"]
    assert "only inside the configured maintenance windows" in ferry("job", "show", "1", config=config).stdout
    with Runtime(load_config(config)).sessions() as session:
        assert get_job(session, summary["job_id"]).plan["window"] is True
    assert json.loads(ferry("jobs", "--format", "json", config=config).stdout)[0]["run_by"] is None


def test_drain_with_window_runs_at_once_when_no_window_is_configured(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    summary = json.loads(ferry("drain", "a", "--window", "--yes", "--format", "json", config=config).stdout)
    assert summary["state"] == "succeeded", summary
    detail = json.loads(ferry("job", "show", str(summary["job_id"]), "--format", "json", config=config).stdout)
    assert detail["kind"] == "drain" and detail["window"] is True
    assert "nothing to move" in ferry("drain", "a", "--yes", config=config).stdout


def test_evacuate_and_drain_over_the_api_store_jobs_the_worker_runs(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    rt = Runtime(load_config(config))
    api = client_for(rt)
    created = api.post("/v1/evacuate", json={"nodes": ["a"], "window": True})
    assert created.status_code == 201, created.text
    job = created.json()
    assert (job["kind"], job["state"], job["window"]) == ("evacuate", "pending", True) and job["moves"]
    refused = api.post("/v1/drain", json={"nodes": ["a"], "approve": True})
    assert refused.status_code == 409 and f"being evacuated by job {job['id']}" in refused.json()["error"]
    listed = json.loads(ferry("jobs", "--limit", "1", "--format", "json", config=config).stdout)
    assert [j["id"] for j in listed] == [job["id"]]
    approved = ferry("job", "approve", str(job["id"]), config=config).stdout
    assert f"job {job['id']}: pending -> approved" in approved
    assert Worker(rt).run_pending() == [job["id"]]
    assert api.get(f"/v1/jobs/{job['id']}").json()["state"] == "succeeded"
    again = api.post("/v1/evacuate", json={"nodes": ["a"], "approve": True})
    assert again.status_code == 200 and again.json() == {"job": None, "moves": 0}
