"""One door to the Proxmox VE REST API: every call goes through :meth:`Api.call`, which journals
it (method, path, parameters without secrets, HTTP status, duration, UPID) and maps failures.

    Backend step --Api(journal)--> call() --proxmoxer (requests, API token, TLS verified)--> PVE
                                      |                         |
                                      +-- JournalEntry <--------+ status / UPID / error line

Failure policy (one rule, documented here):
- GETs are idempotent, so they are retried here with tenacity (bounded attempts, exponential
  backoff with jitter) on transient failures: connection errors, timeouts, 502/503/504 and
  pveproxy's 595/596 ("node unreachable").
- Calls that change something (POST/PUT/DELETE) are never repeated blindly: a timeout may hide a
  started task. They raise :class:`TransientError` and the engine re-runs the whole step, which
  observes first (where is the CT, is a task for it running) before it acts again.
- HTTP 500 is how pve-http-server reports a refused action (a ``die`` in the API code); it is
  deterministic, except when it names a lock ("CT is locked (backup)", "can't lock file"), which
  is transient. 400 (parameter verification) and 401/403 (token, privileges) are permanent.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from adapters.base import Journal, JournalEntry, PermanentError, TransientError
from adapters.proxmox.settings import ProxmoxSettings
from fleet.errors import InputError

#: The secret of an API token inside a value (a remote migration's ``target-endpoint`` carries
#: ``apitoken=PVEAPIToken=USER@REALM!ID=SECRET``): masked in journals.
_TOKEN_IN_VALUE = re.compile(r"(PVEAPIToken=[^=,\s]+=)[^,\s]+")
TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504, 595, 596, 599})
_SECRET_KEYS = ("password", "secret", "token", "ticket", "key", "csrf")


class ApiTransient(TransientError):
    """The API could not be reached or answered 'try later'."""

    def __init__(self, line: str, status: int | None, message: str) -> None:
        super().__init__(line)
        self.status, self.message = status, message


class ApiFailure(PermanentError):
    """The API refused the call; ``message`` is Proxmox's own text, ``errors`` its per-parameter
    reasons for a 400."""

    def __init__(self, line: str, status: int | None, message: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(line)
        self.status, self.message, self.errors = status, message, dict(errors or {})


class ApiSetupError(ApiFailure, InputError):
    """The call failed because ferry's own settings are wrong (the token, the CA): a user mistake
    as much as a refused call. The CLI reports it as one ``KEY=VALUE: why`` line with exit status
    2 (it is an InputError); the engine rolls a move back as for any PermanentError."""

    def __init__(self, line: str, status: int | None, message: str, *, key: str, value: object, why: str) -> None:
        Exception.__init__(self, line)  # not super(): InputError's signature differs
        self.status, self.message, self.errors = status, message, {}
        self.key, self.value, self.why, self.source = key, value, why, None

    def __str__(self) -> str:
        return self.line()


def classify(method: str, path: str, status: int | None, message: str,
             errors: Mapping[str, str] | None = None, *, user: str = "") -> ApiTransient | ApiFailure:
    """The exception for one failed call, with a one-line message an operator can act on."""
    where = f"{method} {path}"
    if status is None or status in TRANSIENT_STATUSES:
        return ApiTransient(f"{where}: {status or 'no answer'} {message}".strip(), status, message)
    if status == 500 and ("locked" in message or "can't lock file" in message):
        return ApiTransient(f"{where}: {message}", status, message)
    if status == 401:  # pve-http-server: no valid ticket / token (id unknown or secret wrong)
        return ApiSetupError(f"{where}: HTTP 401 {message}", status, message, key="proxmox.token_id", value=user,
                             why="the cluster refused the API token (HTTP 401): check the token id and the "
                                 "secret in proxmox.token_secret_file / token_secret_env")
    if status == 403:
        return ApiFailure(f"{where}: HTTP {status} {message} - check proxmox.token_id, the token secret "
                          f"and the token's privileges", status, message)
    detail = "; ".join(f"{k}: {v}" for k, v in (errors or {}).items())
    return ApiFailure(f"{where}: HTTP {status} {message}{' - ' + detail if detail else ''}", status, message, errors)


def redact(params: Mapping[str, Any], secret: str) -> dict[str, Any]:
    """Parameters fit for a journal: secret-looking keys and the token secret itself masked."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if any(word in key.lower() for word in _SECRET_KEYS) or (secret and secret in str(value)):
            out[key] = "***"
        elif isinstance(value, str) and "PVEAPIToken=" in value:
            out[key] = _TOKEN_IN_VALUE.sub(r"\1***", value)
        else:
            out[key] = value
    return out


def is_upid(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("UPID:")


def _ensure_reason(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    if not response.reason:
        response.reason = f"HTTP {response.status_code}"
    return response


class ProxmoxClient:
    """The proxmoxer session (token auth, TLS verified against ``ca_file`` or the system store)."""

    def __init__(self, settings: ProxmoxSettings) -> None:
        self.settings = settings
        verify: bool | str = settings.ca_file if (settings.verify_ssl and settings.ca_file) else settings.verify_ssl
        self._api = ProxmoxAPI(settings.host, port=settings.port, user=settings.token_user,
                               token_name=settings.token_name, token_value=settings.token_secret,
                               verify_ssl=verify, timeout=settings.timeout_s, service="PVE")
        # proxmoxer builds its error text from the reason phrase and fails on a status line that has
        # none (e.g. a bare "596" from a proxy); give every response one.
        self._api._store["session"].hooks["response"].append(_ensure_reason)

    def send(self, method: str, path: str, params: Mapping[str, Any]) -> Any:
        """One HTTP request, no retry; raises ApiTransient / ApiFailure."""
        resource = self._api(path.strip("/"))
        verb = {"GET": resource.get, "POST": resource.post, "PUT": resource.put, "DELETE": resource.delete}[method]
        try:
            return verb(**dict(params))
        except ResourceException as exc:
            errors = exc.errors if isinstance(exc.errors, Mapping) else None
            raise classify(method, path, exc.status_code, str(exc.content).strip(), errors,
                           user=self.settings.token_id) from None
        except requests.exceptions.SSLError:
            raise self._tls_error(method, path) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise classify(method, path, None, exc.__class__.__name__) from None


    def _tls_error(self, method: str, path: str) -> ApiSetupError:
        """Certificate verification failed: retrying cannot help, the CA setting must change."""
        s = self.settings
        key, value = ("proxmox.ca_file", s.ca_file) if s.ca_file else ("proxmox.verify_ssl", s.verify_ssl)
        why = (f"the certificate of {s.host}:{s.port} is not signed by "
               + ("this CA" if s.ca_file else "a CA the system trusts")
               + "; point proxmox.ca_file at the cluster's CA (/etc/pve/pve-root-ca.pem)")
        return ApiSetupError(f"{method} {path}: TLS verification failed", None, "TLS verification failed",
                             key=key, value=value, why=why)


class Api:
    """The client bound to one journal: what a step uses."""

    def __init__(self, client: ProxmoxClient, journal: Journal) -> None:
        self.client, self.journal = client, journal

    def call(self, method: str, path: str, **params: Any) -> Any:
        if method != "GET":
            return self._once(method, path, params)
        settings = self.client.settings
        base = min(0.5, settings.poll_interval_s)
        retrying = Retrying(stop=stop_after_attempt(settings.get_retries), reraise=True,
                            wait=wait_random_exponential(multiplier=base, max=30 * base),
                            retry=retry_if_exception_type(ApiTransient))
        return retrying(self._once, method, path, params)

    def _once(self, method: str, path: str, params: Mapping[str, Any]) -> Any:
        params = {k: v for k, v in params.items() if v is not None}
        started = time.monotonic()
        detail: dict[str, Any] = {"params": redact(params, self.client.settings.token_secret)}
        try:
            result = self.client.send(method, path, params)
        except (ApiTransient, ApiFailure) as exc:
            detail["error"] = exc.message
            self._record(method, path, exc.status, started, detail)
            raise
        if is_upid(result):
            detail["upid"] = result
        self._record(method, path, 200, started, detail)
        return result

    def _record(self, method: str, path: str, status: int | None, started: float, detail: dict[str, Any]) -> None:
        self.journal(JournalEntry(host=self.client.settings.host, what=f"{method} {path}", status=status,
                                  duration_ms=(time.monotonic() - started) * 1000, kind="api", detail=detail))

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, **params)

    def post(self, path: str, **params: Any) -> Any:
        return self.call("POST", path, **params)

    def put(self, path: str, **params: Any) -> Any:
        return self.call("PUT", path, **params)

    def delete(self, path: str, **params: Any) -> Any:
        return self.call("DELETE", path, **params)
