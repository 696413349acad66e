"""The user-management API for admins: ``GET/POST /v1/users``, ``POST /v1/users/{name}/revoke``;
role checks at the gate, one-line 4xx answers, and a revoked token refused at once."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.runtime import Runtime
from tests.conftest import sim_config
from tests.integration.sim.test_api import client_for


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def one_line(answer: object) -> str:
    line = answer.json()["error"]  # type: ignore[attr-defined]
    assert "\n" not in line and line, line
    return line


def test_an_admin_adds_lists_and_revokes_users_and_others_may_not(tmp_path: Path) -> None:
    admin_api = client_for(Runtime(sim_config(tmp_path)))  # the shared token is an admin
    made = admin_api.post("/v1/users", json={"name": "otto", "role": "operator"})
    assert made.status_code == 201 and made.json()["name"] == "otto" and made.json()["token"].startswith("ferry_")
    otto = TestClient(admin_api.app, headers=bearer(made.json()["token"]))
    vera_token = admin_api.post("/v1/users", json={"name": "vera"}).json()["token"]  # viewer by default
    vera = TestClient(admin_api.app, headers=bearer(vera_token))

    listed = admin_api.get("/v1/users").json()
    assert [(u["name"], u["role"], u["revoked_at"]) for u in listed] == [("otto", "operator", None),
                                                                         ("vera", "viewer", None)]
    assert all("token" not in u for u in listed)

    for client, name, role in ((otto, "otto", "operator"), (vera, "vera", "viewer")):
        for answer in (client.get("/v1/users"), client.post("/v1/users", json={"name": "eve", "role": "admin"}),
                       client.post("/v1/users/otto/revoke")):
            assert answer.status_code == 403
            assert one_line(answer) == f"forbidden: {name} is a {role}; this needs admin"
    assert otto.get("/v1/jobs").status_code == 200  # the token itself works

    revoked = admin_api.post("/v1/users/otto/revoke")
    assert revoked.status_code == 200 and revoked.json()["name"] == "otto" and revoked.json()["revoked_at"]
    assert otto.get("/v1/jobs").status_code == 401  # at once
    assert [u["name"] for u in admin_api.get("/v1/users").json() if u["revoked_at"]] == ["otto"]


def test_mistakes_answer_one_line_4xx_naming_the_key(tmp_path: Path) -> None:
    api = client_for(Runtime(sim_config(tmp_path)))
    assert api.post("/v1/users", json={"name": "otto", "role": "operator"}).status_code == 201
    taken = api.post("/v1/users", json={"name": "otto"})
    assert taken.status_code == 409 and one_line(taken).startswith("name='otto': a user of that name exists")
    unknown = api.post("/v1/users/nobody/revoke")
    assert unknown.status_code == 404 and one_line(unknown) == "name='nobody': no such user"
    bad_role = api.post("/v1/users", json={"name": "eve", "role": "root"})
    assert bad_role.status_code == 400 and one_line(bad_role).startswith("role='root': ")
    bad_name = api.post("/v1/users", json={"name": "Eve Smith"})
    assert bad_name.status_code == 400 and one_line(bad_name).startswith("name=")
    extra = api.post("/v1/users", json={"name": "eve", "token": "mine"})
    assert extra.status_code == 400 and one_line(extra).startswith("token=")
    assert [u["name"] for u in api.get("/v1/users").json()] == ["otto"]  # nothing was made
    anonymous = TestClient(api.app)
    assert anonymous.get("/v1/users").status_code == 401
