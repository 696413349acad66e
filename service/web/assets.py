"""Everything a browser loads comes from ferry itself: the console's CSS and htmx, and Swagger UI.

    /static/...         service/web/static (vendored files: see static/VENDORED.md for versions,
                        sources and licences)
    /docs               FastAPI's Swagger UI page, pointed at /static/swagger-ui instead of a CDN
    /docs/oauth2-redirect  its OAuth2 helper page, as FastAPI serves it

Nothing is fetched at run time or at install time: the files are in the package.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
SWAGGER = "/static/swagger-ui"


def serve_assets(app: FastAPI) -> None:
    """Mount the static files and serve /docs from them. The app must be made with docs_url=None."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{SWAGGER}/swagger-ui.css",
                                   swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
