"""The REST API keeps its contract under hostile and unexpected input: the token is checked before
the body is read, an unexpected error is a 500 with a logged ref (never a traceback), ids and
nesting beyond bounds are refused with 400/404, and a schema-based fuzzer (schemathesis, from the
API's own OpenAPI document) finds no server error and no answer that breaks the document."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service import operations as ops
from service.api import create_app
from service.runtime import Runtime
from tests.conftest import sim_config
from tests.integration.sim.test_api import AUTH, TOKEN, error_of

#: Examples schemathesis draws per operation: enough to reach every error branch, bounded in time.
EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def api(tmp_path: Path) -> TestClient:
    return TestClient(create_app(Runtime(sim_config(tmp_path)), token=TOKEN), raise_server_exceptions=False)


# -- the token before the body ---------------------------------------------------------------------
@pytest.mark.parametrize("body", ['{"nodes": ["a"]', '{"nodes": ["a"]}', "\x00\xff", ""])
@pytest.mark.parametrize("path", ["/v1/plans/evacuate", "/v1/jobs", "/v1/evacuate", "/v1/jobs/1/approve"])
def test_without_a_token_any_body_answers_401(api: TestClient, path: str, body: str) -> None:
    r = api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert "bearer token" in error_of(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"


def test_with_the_token_a_malformed_body_answers_400(api: TestClient) -> None:
    r = api.post("/v1/plans/evacuate", content='{"nodes": ["a"]', headers={**AUTH, "Content-Type": "application/json"})
    error_of(r, 400)
    assert api.post("/v1/plans/evacuate", json={"nodes": ["a"]}, headers=AUTH).json()["goal"]["kind"] == "evacuate"


def test_a_bearer_token_only_counts_with_the_bearer_scheme(api: TestClient) -> None:
    for header in (f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x", "Bearer "):
        error_of(api.get("/v1/jobs", headers={"Authorization": header}), 401)
    assert api.get("/v1/jobs", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "application/json; charset=utf-8"])
def test_a_body_is_read_as_json_without_a_json_content_type(api: TestClient, content_type: str | None) -> None:
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    r = api.post("/v1/plans/evacuate", content=b'{"nodes": ["a"]}', headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["goal"] == {"kind": "evacuate", "nodes": ["a"]}


# -- unexpected errors and bounds ------------------------------------------------------------------
def test_an_unexpected_error_is_a_500_with_a_ref_logged_with_its_traceback(
        api: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a defect deep inside")

    monkeypatch.setattr(ops, "list_jobs", broken)
    with caplog.at_level(logging.ERROR, logger="ferry.api"):
        r = api.get("/v1/jobs", headers=AUTH)
    line = error_of(r, 500)
    ref = re.fullmatch(r"internal error \(ref ([0-9a-f]{12})\)", line)
    assert ref, line
    assert "defect" not in r.text and "Traceback" not in r.text
    logged = [rec for rec in caplog.records if rec.name == "ferry.api" and ref.group(1) in rec.getMessage()]
    assert logged and logged[0].exc_info and "a defect deep inside" in str(logged[0].exc_info[1])


@pytest.mark.parametrize("job_id", ["99999999999999999999", str(2**63), "-1", "1e3", "x"])
def test_ids_beyond_the_store_answer_400(api: TestClient, job_id: str) -> None:
    for method, url in (("GET", f"/v1/jobs/{job_id}"), ("POST", f"/v1/jobs/{job_id}/cancel")):
        assert "job_id" in error_of(api.request(method, url, headers=AUTH), 400)
    assert "no such job" in error_of(api.get(f"/v1/jobs/{2**63 - 1}", headers=AUTH), 404)


@pytest.mark.parametrize("depth", [40, 5_000, 200_000])
def test_a_deeply_nested_body_answers_400(api: TestClient, depth: int) -> None:
    nested = '{"inventory": ' + '{"a": ' * depth + "1" + "}" * depth + ', "nodes": ["a"]}'
    error_of(api.post("/v1/plans/evacuate", content=nested, headers=AUTH), 400)
    plan = '{"plan": ' + "[" * depth + "]" * depth + "}"
    error_of(api.post("/v1/jobs", content=plan, headers=AUTH), 400)


def test_the_openapi_document_declares_each_routes_answers(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    codes = {(m, p): set(op["responses"]) for p, ops_ in paths.items() for m, op in ops_.items()}
    assert codes[("get", "/v1/jobs/{job_id}")] == {"200", "400", "401", "403", "404", "500"}
    assert codes[("post", "/v1/jobs/{job_id}/cancel")] == {"200", "400", "401", "403", "404", "409", "500"}
    assert codes[("post", "/v1/evacuate")] >= {"200", "201", "400", "401", "409"}
    assert all("422" not in c for c in codes.values())  # a malformed request answers 400
    error = paths["/v1/jobs"]["post"]["responses"]["409"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorOut"}


# -- schemathesis over every operation --------------------------------------------------------------
def fuzz(operation: APIOperation, mode: GenerationMode, calls: Counter[str]) -> None:
    """Draw cases of ``operation`` and check each answer against the OpenAPI document: never a 5xx,
    every status code and body as declared, and a request outside the schema refused. A request the
    schema allows may still be refused with 400 (an unknown node, a plan ferry cannot verify): the
    document cannot say which nodes exist, so "schema-valid data is accepted" is not checked."""

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def one(case: schemathesis.Case) -> None:
        calls[operation.label] += 1
        case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])

    one()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_no_answer_outside_the_document(tmp_path: Path, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Runtime(sim_config(tmp_path)), token=TOKEN))
    calls: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 32  # with the campaigns' (service/api_nodes.py) and users' routes (service/api_users.py)
    if mode is GenerationMode.NEGATIVE:  # an operation without input has nothing to make invalid
        operations = [op for op in operations if op.body or op.path_parameters or op.query]
    for operation in operations:
        fuzz(operation, mode, calls)
    assert set(calls) == {op.label for op in operations}
    print(f"schemathesis {mode.value}: {len(operations)} operations, {calls.total()} examples")
