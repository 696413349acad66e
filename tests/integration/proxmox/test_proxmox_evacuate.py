"""End to end on the API double: evacuate a node of 30 containers (HA and not, local ZFS and
shared storage, restart/live/dump) with a failing task, a locked container and HTTP 5xx on the
way; every container must end running on an allowed node exactly once, and every API call must
be in the journal."""

from __future__ import annotations

import time

import pytest

from adapters.base import MoveSpec, StepContext
from adapters.proxmox import create_backend
from fleet.model import Inventory
from tests.doubles.journal_recorder import Recorder
from tests.doubles.pvedouble.fixtures import make_double, settings_for  # noqa: F401 - fixture
from tests.integration.conformance.harness import MoveOrder, SagaStore, StepHooks, run_move

NODES = ("pve1", "pve2", "pve3", "pve4")
DUMPED = {"207", "215", "223"}


def evacuation_fleet() -> Inventory:
    storages = {"local-zfs": {"total_gb": 2000, "used_gb": 0, "shared": False},
                "ceph": {"total_gb": 8000, "used_gb": 500, "shared": True},
                "nfs-backup": {"total_gb": 8000, "used_gb": 10, "shared": True}}
    nodes = [{"name": n, "cpus": 32, "memory_mb": 262144, "cpu_usage": 0.2, "storage": storages,
              "kernel": "6.8.12-4-pve", "version": "8.3.1"} for n in NODES]
    cts = []
    for i in range(30):
        ct = {"id": str(200 + i), "node": "pve1", "name": f"vps-{200 + i}", "cpus": 2, "cpu_usage": 0.3,
              "memory_mb": 2048, "memory_used_mb": 1024, "disk_gb": 8 + i % 5, "ips": [f"203.0.113.{20 + i}"],
              "storage": "local-zfs" if i % 2 == 0 else "ceph", "ha": i % 3 == 0 and str(200 + i) not in DUMPED,
              "tags": []}
        if i % 7 == 1:
            ct["tags"] = ["plb_pin_pve3"]
        if i == 11:
            ct["status"] = "stopped"
        cts.append(ct)
    return Inventory.model_validate({"nodes": nodes, "containers": cts})


def allowed_nodes(tags: list[str]) -> set[str]:
    pins = {t.removeprefix("plb_pin_") for t in tags if t.startswith("plb_pin_")}
    return (pins or set(NODES)) - {"pve1"}


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, make_double):  # noqa: F811 - fixture
    def start(inventory: Inventory):
        double = make_double(inventory)
        monkeypatch.setenv("FERRY_TEST_PVE_SECRET", double.token_secret)
        return double
    return start


def test_evacuate_30_containers_with_faults(secret_env, tmp_path) -> None:
    inv = evacuation_fleet()
    double = secret_env(inv)
    world = double.world
    journal = Recorder()
    backend = create_backend(settings_for(double))
    backend.journal = journal
    store = SagaStore(tmp_path)
    world.faults.task_failures[("vzmigrate", 205)] = "migration aborted"        # non-HA, retried
    world.faults.task_failures[("vzmigrate", 203)] = "command 'zfs send' failed: exit code 255"  # HA
    world.faults.task_warnings[("vzmigrate", 201)] = 2                           # WARNINGS: 2 is success
    world.guests[210].lock, world.guests[210].lock_until = "backup", time.monotonic() + 0.3

    targets = {}
    results = {}
    round_robin = 0
    for ct in backend.discover().on_node("pve1"):
        choices = sorted(allowed_nodes(ct.tags))
        target = choices[round_robin % len(choices)]
        round_robin += 1
        targets[ct.id] = target
        method = "dump" if ct.id in DUMPED else ("live" if int(ct.id) % 2 else "restart")
        if ct.id == "214":
            world.faults.http_errors = 3  # the next three requests fail with 503, mid-evacuation
        results[ct.id] = store.run(backend, MoveOrder(ct.id, "pve1", target, method=method), StepHooks(tap=journal))

    pending = {ct for ct, run in results.items() if run.state == "succeeded" and run.cleanup_pending}
    assert pending == set(DUMPED), results  # retention 72 h: each dumped source waits for a later cleanup
    assert all("(retention)" in results[ct].cleanup_pending for ct in pending)
    assert {ct: (run.state, run.message) for ct, run in results.items() if ct not in pending} == {
        ct: ("succeeded", f"moved to {target}") for ct, target in targets.items() if ct not in DUMPED}
    final = backend.discover()
    for i in range(30):
        ct_id = str(200 + i)
        copies = [c for c in final.containers if (c.id == ct_id or f"ferry-from-{ct_id}" in c.tags)
                  and not any(t.startswith("ferry-retired-") for t in c.tags)]
        assert len(copies) == 1, (ct_id, copies)
        assert copies[0].status == inv.container(ct_id).status
        assert copies[0].node == targets[ct_id] and copies[0].node in allowed_nodes(inv.container(ct_id).tags)
        assert copies[0].ips == inv.container(ct_id).ips
    assert not [c for c in final.containers if c.node == "pve1" and c.status == "running"]
    retired = [c for c in final.containers if c.node == "pve1"]
    assert sorted(c.id for c in retired) == sorted(DUMPED)
    assert all(any(t.startswith("ferry-retired-") for t in c.tags) for c in retired)
    assert not world.replication, "presync replication jobs must be removed"

    # Every API call the double served is in the journal, with its status; every task ferry
    # started is journaled with its UPID.
    api = journal.api()
    assert [(e.what, e.status) for e in api] == [(f"{m} {p}", s) for m, p, s in world.requests]
    assert any(e.status == 503 for e in api)
    ours = {t.upid for t in world.tasks.values() if t.user == double.token_id}
    assert ours and ours <= {e.detail.get("upid") for e in api}
    assert any(e.what == "POST /cluster/ha/resources/ct:203/migrate" for e in api)
    failed = [e for e in journal.entries if e.kind == "event" and e.detail.get("exitstatus") not in (None, "OK")]
    assert {e.detail["exitstatus"] for e in failed} >= {"migration aborted", "WARNINGS: 2"}
    assert all(double.token_secret not in repr(e) for e in journal.entries)


def test_lock_that_outlasts_the_wait_fails_with_the_reason(secret_env, tmp_path) -> None:
    double = secret_env(evacuation_fleet())
    double.world.guests[204].lock = "backup"
    backend = create_backend(settings_for(double, lock_wait_s=0.05))
    run = run_move(backend, MoveOrder("204", "pve1", "pve2"), tmp_path)
    assert run.state == "rolled_back" and "locked (backup)" in run.message, run.message
    assert double.world.guests[204].node == "pve1" and double.world.guests[204].status == "running"


def test_every_call_of_an_evacuation_is_a_cited_endpoint_with_cited_parameters(secret_env, tmp_path) -> None:
    from adapters.proxmox.endpoints import ENDPOINTS, cited

    double = secret_env(evacuation_fleet())
    journal = Recorder()
    backend = create_backend(settings_for(double, bwlimit_kib=51200, storage_map={"ceph": "ceph"}))
    backend.journal = journal
    ctx = StepContext(journal=journal)
    orders = [MoveOrder("200", "pve1", "pve2"), MoveOrder("201", "pve1", "pve3", method="live"),
              MoveOrder("202", "pve1", "pve4"), MoveOrder("207", "pve1", "pve2", method="dump",
                                                          options={"ips": ["198.51.100.9/24"]})]
    store = SagaStore(tmp_path)
    for order in orders:  # a dump move's cleanup keeps its source for the retention (72 h)
        run = store.run(backend, order, StepHooks(tap=journal))
        assert run.state == "succeeded" and bool(run.cleanup_pending) == (order.method == "dump"), run.message
    backend.rollback(MoveSpec("204", "pve1", "pve2"), ctx)
    backend.discover()
    backend.purge_expired(ctx, now=2**40)
    seen = set()
    for entry in journal.api():
        method, path = entry.what.split(" ", 1)
        template = cited(method, path)
        assert template, entry.what
        seen.add((method, template))
        assert set(entry.detail["params"]) <= ENDPOINTS[(method, template)][0], entry
    assert len(seen) >= 20
