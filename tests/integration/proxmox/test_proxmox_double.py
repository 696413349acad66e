"""The adapter against the HTTPS API double: discovery round trip, the double's fidelity (auth,
TLS, parameter errors, task semantics) and what the journal may and may not contain."""

from __future__ import annotations

import logging

import proxmoxer
import pytest
import requests
from proxmoxer.core import ResourceException

from adapters.base import CleanupPending, MoveSpec, StepContext
from adapters.proxmox import create_backend
from adapters.proxmox.tasks import parse_upid
from tests.doubles.journal_recorder import Recorder
from tests.doubles.pvedouble.fixtures import make_double, pve_double, settings_for  # noqa: F401 - fixtures
from tests.integration.conformance.harness import MoveOrder, run_move


@pytest.fixture
def backend(pve_double, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", pve_double.token_secret)
    return create_backend(settings_for(pve_double))


def _raw(double, secret=None, verify=True):
    return proxmoxer.ProxmoxAPI("127.0.0.1", port=double.port, user="ferry@pve", token_name="migrate",
                                token_value=secret or double.token_secret,
                                verify_ssl=str(double.ca_file) if verify else True, timeout=5)


def test_discover_matches_the_doubles_fleet_exactly(pve_double, backend) -> None:  # noqa: F811
    found = backend.discover()
    assert found.taken_at
    assert found.model_dump(exclude={"taken_at"}) == pve_double.world.snapshot().model_dump(exclude={"taken_at"})
    ct = found.container("102")
    assert ct.ha and ct.storage == "ceph" and ct.memory_mb == 2048 and ct.ips == ["203.0.113.11"]
    assert found.node("pve1").storage["ceph"].shared and not found.node("pve1").storage["local-zfs"].shared
    assert found.container("101").tags == ["plb_anti_affinity_web"]


def test_discover_reports_locks_and_maintenance(pve_double, backend) -> None:  # noqa: F811
    pve_double.world.guests[104].lock = "backup"
    pve_double.world.nodes["pve3"].maintenance = True
    found = backend.discover()
    assert found.container("104").model_extra["lock"] == "backup"
    assert found.node("pve3").maintenance and not found.node("pve3").receives
    assert found.model_dump(exclude={"taken_at"}) == pve_double.world.snapshot().model_dump(exclude={"taken_at"})


def test_double_checks_token_tls_and_parameters(pve_double) -> None:  # noqa: F811
    with pytest.raises(ResourceException) as wrong_token:
        _raw(pve_double, secret="not-the-secret").cluster.resources.get()
    assert wrong_token.value.status_code == 401
    with pytest.raises(requests.exceptions.SSLError):
        _raw(pve_double, verify=False).cluster.resources.get()  # system CAs do not know the test CA
    api = _raw(pve_double)
    with pytest.raises(ResourceException) as bad:
        api.nodes("pve1").lxc(101).migrate.post(target="pve2", restart="maybe", colour="red")
    assert bad.value.status_code == 400
    assert set(bad.value.errors) == {"restart", "colour"}
    with pytest.raises(ResourceException) as missing:
        api.nodes("pve1").lxc(101).migrate.post()
    assert missing.value.errors == {"target": "property is missing and it is not optional"}


def test_online_lxc_migration_fails_like_proxmox(pve_double) -> None:  # noqa: F811
    api = _raw(pve_double)
    upid = api.nodes("pve1").lxc(101).migrate.post(target="pve2", online=1)
    info = parse_upid(upid)
    assert (info.node, info.type, info.id, info.user) == ("pve1", "vzmigrate", "101", "ferry@pve!migrate")
    for _ in range(200):
        status = api.nodes("pve1").tasks(upid).status.get()
        if status["status"] == "stopped":
            break
    assert status["exitstatus"] == "lxc live migration is currently not implemented"
    assert api.nodes("pve1").tasks(upid).log.get()[-1]["t"].startswith("TASK ERROR: lxc live migration")
    assert pve_double.world.guests[101].node == "pve1"


def test_failed_task_retried_then_done_and_secret_never_logged(pve_double, backend, caplog, tmp_path) -> None:  # noqa: F811
    caplog.set_level(logging.DEBUG)
    pve_double.world.faults.task_failures[("vzmigrate", 104)] = "migration aborted"
    run = run_move(backend, MoveOrder("104", "pve1", "pve2"), tmp_path)
    assert (run.state, run.cleanup_pending) == ("succeeded", ""), run.message
    assert pve_double.world.guests[104].node == "pve2"
    posts = [e for e in run.api() if e.what == "POST /nodes/pve1/lxc/104/migrate"]
    assert len(posts) == 2 and all(e.detail["upid"].startswith("UPID:pve1:") for e in posts)
    assert posts[0].detail["params"] == {"target": "pve2", "restart": 1, "timeout": 180}
    secret = pve_double.token_secret
    assert secret not in caplog.text and "PVEAPIToken" not in caplog.text
    assert all(secret not in repr(e) for e in run.journal)


def test_ha_container_moves_through_the_ha_stack(pve_double, backend, tmp_path) -> None:  # noqa: F811
    run = run_move(backend, MoveOrder("102", "pve1", "pve3", method="live"), tmp_path)
    assert (run.state, run.cleanup_pending) == ("succeeded", ""), run.message
    whats = [e.what for e in run.api()]
    assert "POST /cluster/ha/resources/ct:102/migrate" in whats
    assert "POST /nodes/pve1/lxc/102/migrate" not in whats
    lrm = [t for t in pve_double.world.tasks.values() if t.type == "vzmigrate" and t.id == "102"]
    assert lrm and lrm[0].user == "root@pam" and lrm[0].exitstatus == "OK"
    assert pve_double.world.ha["ct:102"].current == "started"
    assert any(e.kind == "event" and e.detail.get("upid") == lrm[0].upid for e in run.journal)


def test_presync_replicates_local_zfs_then_removes_the_job(pve_double, backend, tmp_path) -> None:  # noqa: F811
    run = run_move(backend, MoveOrder("101", "pve1", "pve2"), tmp_path)
    assert (run.state, run.cleanup_pending) == ("succeeded", ""), run.message
    created = [e for e in run.api() if e.what == "POST /cluster/replication"]
    assert created and created[0].detail["params"]["type"] == "local"
    assert not pve_double.world.replication
    migration = next(t for t in pve_double.world.tasks.values() if t.type == "vzmigrate" and t.id == "101")
    assert "copying 81 MiB" in migration.log[1]  # only the delta after replication, not 4096 MiB


def test_rollback_moves_a_landed_container_back(pve_double, backend) -> None:  # noqa: F811
    ctx = StepContext(journal=Recorder())
    spec = MoveSpec("104", "pve1", "pve3")
    backend.preflight(spec, ctx)
    backend.cutover(spec, ctx)
    assert backend.observe(spec).target.status == "running"
    backend.rollback(spec, ctx)
    state = backend.observe(spec)
    assert state.source.node == "pve1" and state.source.status == "running" and state.target.status == "absent"


def test_dump_keeps_the_source_and_purges_it_after_retention(pve_double, backend, tmp_path) -> None:  # noqa: F811
    ctx = StepContext(journal=Recorder())
    net = {"ips": ["198.51.100.7/24"]}
    run = run_move(backend, MoveOrder("104", "pve1", "pve2", method="dump", options=net), tmp_path)
    assert run.state == "succeeded", run.message
    assert run.cleanup_pending.startswith("source CT 104 kept stopped on pve1 until ")
    spec = MoveSpec("104", "pve1", "pve2", method="dump", ips=("198.51.100.7/24",))  # for the direct calls below
    state = backend.observe(spec)
    assert state.target.status == "running" and state.target.ips == ("198.51.100.7",)
    assert state.source.status == "stopped"
    assert backend.purge_expired(ctx) == []  # retention has not ended
    with pytest.raises(CleanupPending, match=r"\(retention\)"):
        backend.cleanup(spec, ctx)  # called again: still due later, nothing changes
    assert backend.purge_expired(ctx, now=2**40) == [104]
    assert 104 not in pve_double.world.guests
    before = len(pve_double.world.calls)
    backend.cleanup(spec, ctx)  # the sweep purged it: the move's own cleanup has nothing left to do
    assert not [c for c in pve_double.world.calls[before:] if c["method"] != "GET"]


def _dump_until_verified(backend, spec: MoveSpec, ctx: StepContext) -> None:
    for step in ("preflight", "prepare", "presync", "cutover", "verify"):
        getattr(backend, step)(spec, ctx)


def _set_status(double, vmid: int, status: str) -> None:
    with double.world.lock:
        double.world.guests[vmid].status = status


@pytest.mark.parametrize("path", ["cleanup", "sweep"])
def test_cleanup_and_the_sweep_purge_by_the_same_guard(pve_double, monkeypatch, path) -> None:  # noqa: F811
    """A move's cleanup and purge_expired's sweep are one code path: neither destroys a source whose
    restored copy is not running; both destroy it once the copy runs, with the same call and event."""
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", pve_double.token_secret)
    backend = create_backend(settings_for(pve_double, retention_hours=0))
    journal = Recorder()
    ctx = StepContext(journal=journal)
    spec = MoveSpec("104", "pve1", "pve2", method="dump")
    _dump_until_verified(backend, spec, ctx)
    copy = int(backend.observe(spec).target.ct)
    _set_status(pve_double, copy, "stopped")  # the copy died after verify
    with pytest.raises(CleanupPending, match=f"restored copy of CT 104 {copy} is stopped on pve2"):
        backend.cleanup(spec, ctx)  # retires the source (tag), but holds it: the copy is down
    assert backend.purge_expired(ctx, now=2**40) == []
    assert pve_double.world.guests[104].status == "stopped"
    assert any(t.startswith("ferry-retired-") for t in pve_double.world.guests[104].tags)
    assert not [c for c in pve_double.world.calls if c["method"] == "DELETE"]

    _set_status(pve_double, copy, "running")
    if path == "cleanup":
        backend.cleanup(spec, ctx)
    else:
        assert backend.purge_expired(ctx, now=2**40) == [104]
    assert 104 not in pve_double.world.guests
    deleted = [c for c in pve_double.world.calls if c["method"] == "DELETE"]
    assert [(c["path"], c["params"]) for c in deleted] == [("/nodes/pve1/lxc/104", {"purge": "1"})]
    events = [e.detail for e in journal.entries if e.what == "purged retired source"]
    assert events == [{"ct": "104", "vmid": 104, "node": "pve1", "copy": copy}]
    backend.cleanup(spec, ctx)  # idempotent: nothing left, nothing raised


def test_discover_keeps_a_customers_hostile_hostname_escaped(pve_double, backend) -> None:  # noqa: F811
    everyone = {ct.id for ct in pve_double.world.snapshot().containers}
    pve_double.world.guests[104].hostname = "db\x1b]0;pwned\x07\u202e"  # the customer's choice
    found = backend.discover()
    assert found.container("104").name == "db\\x1b]0;pwned\\x07\\u202e"
    assert {ct.id for ct in found.containers} == everyone
