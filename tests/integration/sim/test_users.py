"""Users, roles and who did what: `ferry user add|list|revoke`, the API's role per route, the shared
token as an admin, and every approval, pause and cancel recorded in `job show` and the API."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from fastapi.testclient import TestClient

from service.config import load_config
from service.runtime import Runtime
from service.users import SHARED_TOKEN_USER, hash_token
from tests.integration.sim.test_api import EMPTY_A, TOKEN, client_for, hand_plan
from tests.integration.sim.test_cli import ferry, write_config


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_users_from_the_cli_get_their_role_in_the_api_and_are_recorded(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    viewer = ferry("user", "add", "vera", "--role", "viewer", config=config).stdout.strip()
    operator = ferry("user", "add", "otto", "--role", "operator", config=config).stdout.strip()
    assert viewer.startswith("ferry_") and len(viewer) > 40 and viewer != operator
    listed = json.loads(ferry("user", "list", "--format", "json", config=config).stdout)
    assert [(u["name"], u["role"], u["revoked_at"]) for u in listed] == [("otto", "operator", None),
                                                                         ("vera", "viewer", None)]
    database = tmp_path / "state" / "ferry.db"
    with closing(sqlite3.connect(database)) as db:  # closed before the file is read below (POSIX locks)
        stored = db.execute("SELECT token_hash FROM users ORDER BY name").fetchall()
    assert stored == [(hash_token(operator),), (hash_token(viewer),)]  # the hash, never the token
    assert viewer.encode() not in database.read_bytes()

    api = client_for(Runtime(load_config(config)))
    job_id = api.post("/v1/jobs", json={"plan": hand_plan(EMPTY_A[2:3])}).json()["id"]
    as_viewer, as_operator = TestClient(api.app, headers=bearer(viewer)), TestClient(api.app, headers=bearer(operator))
    assert as_viewer.get(f"/v1/jobs/{job_id}").json()["state"] == "pending"
    refused = as_viewer.post(f"/v1/jobs/{job_id}/approve")
    assert refused.status_code == 403 and "vera is a viewer; this needs operator" in refused.json()["error"]
    assert as_viewer.post("/v1/plans/evacuate", json={"nodes": ["a"]}).status_code == 403
    assert as_operator.post(f"/v1/jobs/{job_id}/approve").json()["state"] == "approved"
    assert as_operator.post(f"/v1/jobs/{job_id}/pause").json()["state"] == "paused"
    assert api.post(f"/v1/jobs/{job_id}/cancel").json()["state"] == "cancelling"  # the shared token: admin
    actions = as_viewer.get(f"/v1/jobs/{job_id}").json()["actions"]
    assert [(a["action"], a["by"]) for a in actions] == [("approve", "otto"), ("pause", "otto"),
                                                         ("cancel", SHARED_TOKEN_USER)]
    assert all(a["at"].endswith("Z") for a in actions)
    shown = " ".join(ferry("job", "show", str(job_id), config=config).stdout.split())
    assert "approve by otto" in shown and f"cancel by {SHARED_TOKEN_USER}" in shown

    # A second instance on the same store in this process (as `ferry serve` runs an API and a
    # worker): opening it must not drop the first one's SQLite locks (which made the first read a
    # stale snapshot after another process's last connection deleted the WAL under it).
    fresh = TestClient(client_for(Runtime(load_config(config))).app, headers=bearer(operator))
    ferry("user", "revoke", "otto", config=config)
    assert as_operator.get("/v1/jobs").status_code == 401  # the instance that served otto before
    assert fresh.get("/v1/jobs").status_code == 401
    again = ferry("user", "add", "otto", config=config, check=False)
    assert again.returncode == 2 and "a user of that name exists" in again.stderr


def test_cli_controls_and_approvals_record_the_login_name(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    ferry("evacuate", "a", "--yes", config=config)
    detail = json.loads(ferry("job", "show", "1", "--format", "json", config=config).stdout)
    assert [a["action"] for a in detail["actions"]] == ["approve"]
    assert detail["actions"][0]["by"].startswith("cli:")


def test_bad_user_names_and_roles_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for name in ("Alice", "a b", SHARED_TOKEN_USER, "x" * 70):
        result = ferry("user", "add", name, config=config, check=False)
        assert result.returncode == 2, name
    assert ferry("user", "add", "ann", "--role", "root", config=config, check=False).returncode == 2
    missing = ferry("user", "revoke", "nobody", config=config, check=False)
    assert missing.returncode == 2 and "no such user" in missing.stderr
    assert TOKEN  # the shared token of the API tests is untouched by users
