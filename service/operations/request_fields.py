"""The request fields' defaults and descriptions, in plain Python: one wording for the API's
schema (service.operations.requests, pydantic) and the CLI's option help, which ``ferry --help``
writes without importing pydantic models."""

from __future__ import annotations

from enum import StrEnum

#: Seconds CP-SAT searches when the caller does not say.
DEFAULT_TIME_LIMIT_S = 10.0
#: Jobs listed when the caller does not say, and the most one listing returns.
DEFAULT_JOB_LIMIT, MAX_JOB_LIMIT = 50, 10_000


class Solver(StrEnum):
    greedy = "greedy"
    cp_sat = "cp-sat"


#: What a field means, by field name (the same name on every request that has the field).
DESCRIPTIONS: dict[str, str] = {
    "solver": "greedy: fast, near-optimal; cp-sat: OR-Tools, for small fleets",
    "time_limit": "cp-sat: seconds to search",
    "aggressiveness": "1 = fix violations only, 5 = any gain",
    "approve": "the job may run at once (else it waits for approval)",
    "window": "start moves only inside the configured maintenance windows",
    "max_out": "nodes out of service at once, at most",
    "maintenance": "how long each node's maintenance lasts, e.g. 45min, 2h",
    "start": "ISO 8601 instant the campaign may start (default: now)",
}
