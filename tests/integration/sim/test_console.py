"""The console over HTTP (no browser): log in, cookie flags, CSRF and roles on every decision, who
decided, the event stream of a job, every asset and /docs served by ferry itself, untrusted names
escaped. tests/integration/sim/test_console_browser.py drives the same pages in Chromium."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from service.runtime import Runtime
from service.users import Role, add_user, revoke_user
from service.web import views
from service.worker import Worker
from tests.integration.sim.test_api import AUTH, EMPTY_A, TOKEN, client_for, hand_plan, rt, wait_for  # noqa: F401


def logged_in(app: object, token: str = TOKEN) -> tuple[TestClient, str]:
    """A browser-like client with a session cookie, and the page's CSRF token."""
    browser = TestClient(app)
    answer = browser.post("/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    page = browser.get("/")
    assert page.status_code == 200
    return browser, re.search(r'"X-CSRF-Token": "([^"]+)"', page.text).group(1)


@pytest.fixture
def api(rt: Runtime) -> TestClient:  # noqa: F811
    return client_for(rt)


def pending_job(api: TestClient) -> int:
    return api.post("/v1/jobs", json={"plan": hand_plan(EMPTY_A[2:3])}).json()["id"]


def test_login_sets_a_strict_http_only_cookie_and_a_bad_token_is_refused(api: TestClient) -> None:
    browser = TestClient(api.app)
    assert browser.get("/", follow_redirects=False).headers["location"] == "/login"
    assert browser.get("/ui/fleet").status_code == 401
    assert browser.post("/login", data={"token": "x" * 40}).status_code == 401
    answer = browser.post("/login", data={"token": TOKEN}, follow_redirects=False)
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert TOKEN not in answer.headers["set-cookie"]  # the cookie is a session id, not the token
    fleet = browser.get("/ui/fleet").text
    assert "3 nodes, 8 containers" in fleet and 'data-node="a"' in fleet
    hostile = browser.post("/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"})
    assert hostile.status_code == 401


def test_decisions_need_the_csrf_token_and_the_operator_role_and_record_who(rt: Runtime,  # noqa: F811
                                                                           api: TestClient) -> None:
    job_id = pending_job(api)
    vera = add_user(rt.sessions, "vera", Role.viewer)
    otto = add_user(rt.sessions, "otto", Role.operator)
    as_vera, vera_csrf = logged_in(api.app, vera)
    assert f"job {job_id}" in as_vera.get("/ui/plans").text and "Approve" not in as_vera.get("/ui/plans").text
    assert as_vera.post(f"/ui/plans/{job_id}/approve", headers={"X-CSRF-Token": vera_csrf}).status_code == 403
    as_otto, otto_csrf = logged_in(api.app, otto)
    assert as_otto.post(f"/ui/plans/{job_id}/approve").status_code == 403  # no CSRF token
    assert as_otto.post(f"/ui/plans/{job_id}/approve", headers={"X-CSRF-Token": vera_csrf}).status_code == 403
    assert api.get(f"/v1/jobs/{job_id}").json()["state"] == "pending"
    approved = as_otto.post(f"/ui/plans/{job_id}/approve", headers={"X-CSRF-Token": otto_csrf})
    assert f"job {job_id}: approved by otto" in approved.text
    paused = as_otto.post(f"/ui/jobs/{job_id}/pause", headers={"X-CSRF-Token": otto_csrf}).text
    assert "pause by <b>otto</b>" in paused and 'data-state="paused"' in paused
    rejected = as_otto.post(f"/ui/jobs/{job_id}/cancel", headers={"X-CSRF-Token": otto_csrf}).text
    assert "cancel by <b>otto</b>" in rejected
    actions = api.get(f"/v1/jobs/{job_id}").json()["actions"]
    assert [(a["action"], a["by"]) for a in actions] == [("approve", "otto"), ("pause", "otto"), ("cancel", "otto")]
    revoke_user(rt.sessions, "otto")
    assert as_otto.get("/ui/jobs").status_code == 401  # a revoked user's session ends with the token


def test_a_rejected_plan_is_cancelled_and_recorded_as_rejected(api: TestClient) -> None:
    job_id = pending_job(api)
    browser, csrf = logged_in(api.app)
    answer = browser.post(f"/ui/plans/{job_id}/reject", headers={"X-CSRF-Token": csrf})
    assert f"job {job_id}: rejected by shared-token" in answer.text
    assert api.get(f"/v1/jobs/{job_id}").json()["state"] in ("cancelling", "cancelled")
    assert api.get(f"/v1/jobs/{job_id}").json()["actions"][0]["action"] == "reject"
    again = browser.post(f"/ui/plans/{job_id}/approve", headers={"X-CSRF-Token": csrf})
    assert "only a job that is pending can be approved" in again.text  # the lifecycle's words


def test_the_event_stream_follows_a_job_to_its_end(rt: Runtime, api: TestClient) -> None:  # noqa: F811
    job_id = api.post("/v1/jobs", json={"plan": hand_plan(EMPTY_A[:2]), "approve": True}).json()["id"]
    browser, _ = logged_in(api.app)
    worker = Worker(rt)
    worker.start()
    try:
        events: list[str] = []
        with browser.stream("GET", f"/ui/jobs/{job_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():  # the server ends the stream once the job is final
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))
    finally:
        worker.stop()
    assert events[0] == "progress" and events[-1] == "done" and events.count("done") == 1
    assert "controls" in events  # the page showed no state: the buttons follow the job's
    panel = browser.get(f"/ui/jobs/{job_id}").text
    assert 'data-state="succeeded"' in panel and "data-events" not in panel  # final: no stream
    assert panel.count('value="100"') == 2


def test_every_asset_and_the_docs_are_served_locally(api: TestClient) -> None:
    browser, _ = logged_in(api.app)
    pages = [browser.get("/").text, browser.get("/login").text, TestClient(api.app).get("/docs").text]
    for page in pages:
        assert not re.search(r'(src|href)="(https?:)?//', page), page  # nothing from elsewhere
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
            assert TestClient(api.app).get(asset).status_code == 200, asset
    assert "/static/swagger-ui/swagger-ui-bundle.js" in pages[2]
    assert "/static/htmx/htmx.min.js" in pages[0]


def test_untrusted_names_are_escaped() -> None:
    job = {"id": 1, "kind": "evacuate", "nodes": ["<b>n</b>"], "state": "succeeded", "message": "<script>x</script>",
           "moves": [{"ct": "<img src=x>", "from": "a", "to": "b", "state": "succeeded", "step": None,
                      "phase": None, "figures": {}, "predicted": {}, "message": "\"'><"}],
           "journal": [], "actions": [{"action": "approve", "by": "<i>", "at": "2026-01-01T00:00:00Z"}]}
    page = views.job_view(job, True, None)
    assert "<script>" not in page and "<img" not in page and "<i>" not in page and "&lt;img src=x&gt;" in page
