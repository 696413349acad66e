"""The one table of ferry's verbs on its two surfaces: each CLI command and its REST route.

Both surfaces call the same operation for a verb and take the same options, under the same names,
except where this table says otherwise and why. tests/integration/sim/test_surfaces.py walks the
Typer app and the FastAPI routes and fails on anything this table does not account for, so a
command or a route added without its twin (or an option without its field) is caught.
"""

from __future__ import annotations

#: CLI command path <-> (HTTP method, route path): the same verb on both surfaces.
TWINS: dict[tuple[str, ...], tuple[str, str]] = {
    ("inventory",): ("GET", "/v1/inventory"),
    ("plan", "evacuate"): ("POST", "/v1/plans/evacuate"),
    ("plan", "drain"): ("POST", "/v1/plans/drain"),
    ("plan", "rebalance"): ("POST", "/v1/plans/rebalance"),
    ("plan", "place"): ("POST", "/v1/plans/place"),
    ("evacuate",): ("POST", "/v1/evacuate"),
    ("drain",): ("POST", "/v1/drain"),
    ("run",): ("POST", "/v1/jobs"),
    ("jobs",): ("GET", "/v1/jobs"),
    ("job", "show"): ("GET", "/v1/jobs/{job_id}"),
    ("job", "approve"): ("POST", "/v1/jobs/{job_id}/approve"),
    ("job", "pause"): ("POST", "/v1/jobs/{job_id}/pause"),
    ("job", "resume"): ("POST", "/v1/jobs/{job_id}/resume"),
    ("job", "cancel"): ("POST", "/v1/jobs/{job_id}/cancel"),
    ("node", "list"): ("GET", "/v1/nodes"),
    ("node", "cordon"): ("POST", "/v1/nodes/{node}/cordon"),
    ("node", "uncordon"): ("POST", "/v1/nodes/{node}/uncordon"),
    ("node", "drain"): ("POST", "/v1/nodes/{node}/drain"),
    ("node", "restore"): ("POST", "/v1/nodes/{node}/restore"),
    ("maintenance", "plan"): ("POST", "/v1/maintenance/plan"),
    ("maintenance", "create"): ("POST", "/v1/maintenance/campaigns"),
    ("maintenance", "list"): ("GET", "/v1/maintenance/campaigns"),
    ("maintenance", "show"): ("GET", "/v1/maintenance/campaigns/{campaign_id}"),
    ("maintenance", "approve"): ("POST", "/v1/maintenance/campaigns/{campaign_id}/approve"),
    ("maintenance", "pause"): ("POST", "/v1/maintenance/campaigns/{campaign_id}/pause"),
    ("maintenance", "resume"): ("POST", "/v1/maintenance/campaigns/{campaign_id}/resume"),
    ("maintenance", "cancel"): ("POST", "/v1/maintenance/campaigns/{campaign_id}/cancel"),
    ("user", "add"): ("POST", "/v1/users"),
    ("user", "list"): ("GET", "/v1/users"),
    ("user", "revoke"): ("POST", "/v1/users/{name}/revoke"),
}

#: Verbs only the CLI has, and why.
CLI_ONLY_VERBS: dict[tuple[str, ...], str] = {
    ("demo",): "a self-contained show on a built-in simulated fleet, for a terminal",
    ("serve",): "starts the API itself",
    ("jobs", "resume"): "runs unfinished jobs in this process; under 'ferry serve' the worker resumes them on every poll",
    ("cleanup",): "runs deferred cleanups in this process; under 'ferry serve' the worker runs them every minute",
    ("maintenance", "run"): "runs a whole campaign in this process, for as long as its calendar lasts",
    ("recovery", "stale"): "a report for the operator at a terminal; the REST API has no recovery route yet",
}

#: Routes only the API has, and why.
API_ONLY_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe for load balancers",
    ("GET", "/metrics"): "Prometheus scrape target",
    ("GET", "/openapi.json"): "the API's own description",
    ("GET", "/docs"): "browsable view of the OpenAPI document",
    ("GET", "/docs/oauth2-redirect"): "part of the /docs page",
    ("GET", "/redoc"): "browsable view of the OpenAPI document",
}

#: CLI option -> API field where the conventions of each surface name one thing differently.
RENAMED: dict[str, str] = {
    "yes": "approve",  # a terminal asks for approval unless --yes; the CLI's jobs are always approved
    "plan_file": "plan",  # a file on the command line, the document itself in the body
}

#: CLI options with no API field, and why (on every verb that has them).
CLI_ONLY_OPTIONS: dict[str, str] = {
    "format": "the API always answers JSON; the CLI chooses between a table and JSON",
    "out": "the API's answer is the plan itself; the CLI can also save it to a file",
    "watch": "refreshes a terminal; API clients poll GET /v1/jobs/{job_id}",
    "wide": "lays a table out for a terminal; the API answers JSON",
    "from_backups": "recovering a dead node from its backups is a CLI verb so far (service/recovery.py)",
    "node_is_fenced": "the operator's confirmation at a terminal that a dead node is powered off",
}

#: API fields with no CLI option, and why.
API_ONLY_FIELDS: dict[str, str] = {}
