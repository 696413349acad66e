"""The console's routes: log in with a token, then the fleet, plans to review, jobs, live progress.

    GET  /login, POST /login (token) --> session cookie --> GET / (the page; htmx fills its sections)
    GET  /ui/fleet | /ui/plans | /ui/jobs | /ui/jobs/{id}     fragments, for a viewer
    GET  /ui/jobs/{id}/events                                 server-sent events: the job's progress
    POST /ui/plans/{id}/approve|reject, /ui/jobs/{id}/pause|resume|cancel
                                                              an operator's, with the CSRF token
    every decision --> service.operations.control(actor=the session's user) --> recorded who

A POST must carry the session's CSRF token (htmx sends it as ``X-CSRF-Token`` from the page's
``hx-headers``; the logout form as a field) and, when the browser says where it comes from, an
``Origin`` equal to the host it was sent to. The cookie is HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path
from string import Template
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from fleet.errors import InputError
from service import operations as ops
from service import users
from service.api_models import MAX_JOB_ID
from service.jobs import get_job
from service.lifecycle import JOB_FINAL, JobState
from service.runtime import Runtime
from service.store import job_moves
from service.users import Role
from service.web import views
from service.web.sessions import (
    COOKIE,
    SESSION_HOURS,
    ConsoleSession,
    close_session,
    open_session,
    session_of,
)

TEMPLATES = Path(__file__).parent / "templates"
JobId = Annotated[int, PathParam(ge=0, le=MAX_JOB_ID)]
#: How often the event stream looks at the store, and how long one stream lasts at most (the
#: browser reconnects by itself after that).
EVENT_POLL_S = 0.25
EVENT_STREAM_MAX_S = 600.0
#: Pending jobs shown for review, newest first.
REVIEW_LIMIT = 20


class Refused(Exception):
    """A console request without a session, a role or a CSRF token: answered without detail."""

    def __init__(self, status_code: int, line: str) -> None:
        super().__init__(line)
        self.status_code, self.line = status_code, line


def _template(name: str, **values: str) -> str:
    return Template((TEMPLATES / name).read_text(encoding="utf-8")).substitute(
        {k: views.esc(v) for k, v in values.items()})


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


class Console:
    """The routes over one runtime; ``shared_token`` logs in as the shared-token admin."""

    def __init__(self, rt: Runtime, shared_token: str) -> None:
        self.rt, self.shared = rt, shared_token

    # -- who is asking --------------------------------------------------------------------------
    def viewer(self, request: Request) -> ConsoleSession:
        found = session_of(self.rt.sessions, request.cookies.get(COOKIE))
        if found is None:
            raise Refused(401, "log in again")
        return found

    def from_page(self, request: Request, csrf: str | None = None) -> ConsoleSession:
        """The session of a POST that carries its CSRF token (header, or ``csrf`` for a form)."""
        found = self.viewer(request)
        given = csrf or request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(given.encode(), found.csrf.encode()) or not _same_origin(request):
            raise Refused(403, "this request did not come from the console's own page")
        return found

    def operator(self, request: Request) -> ConsoleSession:
        found = self.from_page(request)
        if not found.identity.allows(Role.operator):
            raise Refused(403, f"{found.identity.name} is a {found.identity.role.value}; this needs operator")
        return found

    # -- pages ----------------------------------------------------------------------------------
    def page(self, request: Request) -> Response:
        found = session_of(self.rt.sessions, request.cookies.get(COOKIE))
        if found is None:
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse(_template("page.html", user=found.identity.name, role=found.identity.role.value,
                                      csrf=found.csrf))

    async def login(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        who = await run_in_threadpool(users.identify, self.rt.sessions, token, self.shared)
        if who is None or not _same_origin(request):
            return HTMLResponse(_template("login.html", error="that token is not valid"), status_code=401)
        cookie = await run_in_threadpool(open_session, self.rt.sessions, who)
        answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(COOKIE, cookie, max_age=SESSION_HOURS * 3600, httponly=True, samesite="strict",
                          secure=request.url.scheme == "https", path="/")
        return answer

    async def logout(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        await run_in_threadpool(self.from_page, request, (form.get("csrf") or [""])[0])
        await run_in_threadpool(close_session, self.rt.sessions, request.cookies.get(COOKIE))
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(COOKIE, path="/")
        return answer

    # -- fragments ------------------------------------------------------------------------------
    def fleet(self, request: Request) -> HTMLResponse:
        self.viewer(request)
        return HTMLResponse("<h2>Fleet</h2>" + views.fleet_view(ops.current_inventory(self.rt)))

    def plans(self, request: Request, note: str = "") -> HTMLResponse:
        """Pending jobs: plans stored for review (``POST /v1/jobs`` without ``approve``)."""
        found = self.viewer(request)
        pending = [j for j in ops.list_jobs(self.rt, REVIEW_LIMIT * 5) if j["state"] == JobState.PENDING]
        with self.rt.sessions() as session:
            cards = [{**j, "plan": get_job(session, j["id"]).plan} for j in pending[:REVIEW_LIMIT]]
        return HTMLResponse(views.plans_view(cards, found.identity.allows(Role.operator), note))

    def jobs(self, request: Request) -> HTMLResponse:
        self.viewer(request)
        return HTMLResponse(views.jobs_view(ops.list_jobs(self.rt, 50)))

    def detail(self, job_id: int) -> dict[str, Any]:
        """``job show``'s record, with each move's start on the world clock (for its ETA)."""
        job = ops.job_detail(self.rt, job_id)
        with self.rt.sessions() as session:
            started = {m.ct: m.started_at for m in job_moves(session, job_id)}
        return {**job, "moves": [{**m, "started_at": started.get(m["ct"])} for m in job["moves"]]}

    def now(self) -> float | None:
        try:
            return float(self.rt.backend.now())
        except Exception:  # noqa: BLE001 - an ETA is a nicety: no clock, no ETA
            return None

    def job(self, request: Request, job_id: int, note: str = "") -> HTMLResponse:
        found = self.viewer(request)
        head = f'<p class="note">{views.esc(note)}</p>' if note else ""
        body = views.job_view(self.detail(job_id), found.identity.allows(Role.operator), self.now())
        return HTMLResponse(head + body)

    # -- decisions ------------------------------------------------------------------------------
    def decide_plan(self, request: Request, job_id: int, decision: str) -> HTMLResponse:
        who = self.operator(request).identity.name
        try:
            if decision == "approve":
                ops.control(self.rt, job_id, "approve", actor=who)
            else:  # a rejected plan is a cancelled job, recorded as rejected
                ops.control(self.rt, job_id, "cancel")
                users.record_action(self.rt.sessions, job_id, "reject", who)
        except InputError as exc:
            return self.plans(request, exc.line())
        return self.plans(request, f"job {job_id}: {'approved' if decision == 'approve' else 'rejected'} by {who}")

    def control(self, request: Request, job_id: int, action: str) -> HTMLResponse:
        who = self.operator(request).identity.name
        try:
            ops.control(self.rt, job_id, action, actor=who)
        except InputError as exc:
            return self.job(request, job_id, exc.line())
        return self.job(request, job_id)

    # -- live progress --------------------------------------------------------------------------
    async def events(self, request: Request, job_id: int, shown: str) -> StreamingResponse:
        found = await run_in_threadpool(self.viewer, request)
        await run_in_threadpool(self.detail, job_id)  # 404 before the stream starts
        return StreamingResponse(self._stream(request, job_id, found, shown), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _stream(self, request: Request, job_id: int, found: ConsoleSession,
                      shown: str) -> AsyncIterator[str]:
        """``progress`` whenever the job's moves change; ``controls`` when its state differs from the
        one the page shows (so buttons are not replaced under the pointer); ``done`` once it is
        final. Bounded in time."""
        sent, deadline = "", time.monotonic() + EVENT_STREAM_MAX_S
        can_act = found.identity.allows(Role.operator)
        while time.monotonic() < deadline and not await request.is_disconnected():
            job = await run_in_threadpool(self.detail, job_id)
            fragment = views.progress_view(job, await run_in_threadpool(self.now))
            if fragment != sent:
                sent = fragment
                yield _event("progress", fragment)
            if job["state"] != shown:
                shown = job["state"]
                yield _event("controls", views.controls_view(job, can_act))
            if job["state"] in JOB_FINAL:
                yield _event("done", job["state"])
                return
            await asyncio.sleep(EVENT_POLL_S)


def _event(name: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {name}\n{lines}\n"


def console_router(rt: Runtime, shared_token: str) -> APIRouter:
    """The console's routes (left out of the OpenAPI document: they are pages, not the API)."""
    console = Console(rt, shared_token)
    router = APIRouter(include_in_schema=False)
    router.get("/")(console.page)
    router.get("/login")(lambda: HTMLResponse(_template("login.html", error="")))
    router.post("/login")(console.login)
    router.post("/logout")(console.logout)
    router.get("/ui/fleet")(console.fleet)
    router.get("/ui/jobs")(console.jobs)

    @router.get("/ui/plans")
    def plans(request: Request) -> HTMLResponse:
        return console.plans(request)

    @router.get("/ui/jobs/{job_id}")
    def job(request: Request, job_id: JobId) -> HTMLResponse:
        return console.job(request, job_id)

    @router.get("/ui/jobs/{job_id}/events")
    async def events(request: Request, job_id: JobId, shown: str = "") -> StreamingResponse:
        return await console.events(request, job_id, shown)

    for decision in ("approve", "reject"):
        router.post(f"/ui/plans/{{job_id}}/{decision}")(_bind(console.decide_plan, decision))
    for action in ("pause", "resume", "cancel"):
        router.post(f"/ui/jobs/{{job_id}}/{action}")(_bind(console.control, action))
    return router


def _bind(method: Any, word: str) -> Any:
    def route(request: Request, job_id: JobId) -> HTMLResponse:
        return method(request, job_id, word)

    route.__name__ = f"console_{word}"
    return route
