"""The operator's console, served by ``ferry serve`` beside the REST API, with no internet needed.

    browser --GET /login, POST /login (an API token)--> session cookie (service.web.sessions)
            --GET /--> the page (templates/page.html); htmx (vendored) fills its sections from
               /ui/* fragments (service.web.views) and follows a job over server-sent events
            --POST /ui/...--> service.operations, the same operations the CLI and the API call,
               recording who decided (service.users)
    /static, /docs --> files in this package (service.web.assets)

The console never calls the REST API over HTTP: it is one more surface over service.operations.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from service.runtime import Runtime


def install_console(app: FastAPI, rt: Runtime, shared_token: str) -> None:
    """Add the console's routes, its assets and the offline /docs to the API's app."""
    from service.web.assets import serve_assets
    from service.web.console import Refused, console_router

    serve_assets(app)
    app.include_router(console_router(rt, shared_token))

    @app.exception_handler(Refused)
    def _refused(request: Request, exc: Refused) -> HTMLResponse:
        # htmx follows HX-Redirect: a fragment asked for after the session ended goes to the login page.
        headers = {"HX-Redirect": "/login"} if exc.status_code == 401 else None
        return HTMLResponse(f'<p class="note">{exc.line}</p>', status_code=exc.status_code, headers=headers)
