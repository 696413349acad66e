"""Proxmox cluster -> cluster over real HTTPS, two API doubles as two clusters (one mixed config):
the container leaves cluster A by ``remote_migrate`` (the double of A reaches the double of B
with the endpoint's API token, pinned to its certificate's fingerprint) and appears on cluster B
with the same config; an A that predates remote migration (PVE 7.2: 501) is left by vzdump ->
shared backup storage -> restore. Either way ferry deletes the source itself, only after the
copy verified, and every call is in the move's journal."""

from __future__ import annotations

import json

import pytest

from adapters import proxmox
from adapters.mixed import MixedBackend
from adapters.proxmox.endpoints import ENDPOINTS, cited
from fleet.model import Inventory
from tests.doubles.pvedouble.fixtures import make_double, settings_for, small_fleet  # noqa: F401 - fixtures
from tests.doubles.pvedouble.nodeshell import NodeShell
from tests.doubles.pvedouble.remote import fingerprint_of
from tests.doubles.pvedouble.server import start_double
from tests.doubles.pvedouble.world import World
from tests.integration.conformance.harness import MoveOrder, StepHooks, run_move

SECRET_B = "0d7f5a4e-8c1b-4e2a-9b3c-7a6f5e4d3c2b"


def fleet_b() -> Inventory:
    """Cluster B: two nodes with ZFS and the NFS backup storage cluster A also mounts."""
    def node(name: str) -> dict:
        return {"name": name, "cpus": 16, "memory_mb": 65536, "version": "8.3.1", "kernel": "6.8.12-4-pve",
                "storage": {"tank": {"total_gb": 1000, "used_gb": 10, "shared": False},
                            "nfs-backup": {"total_gb": 8000, "used_gb": 10, "shared": True}}}
    cts = [{"id": "501", "node": "pveb2", "memory_mb": 1024, "disk_gb": 4, "storage": "tank", "ips": ["198.51.100.5"]}]
    return Inventory.model_validate({"nodes": [node("pveb1"), node("pveb2")], "containers": cts})


@pytest.fixture
def clusters(make_double, monkeypatch, tmp_path):  # noqa: F811
    a = make_double(small_fleet())
    b = start_double(World.from_inventory(fleet_b()), tmp_path / "pki-b", token_secret=SECRET_B)
    b.world.cluster_name = "pve-b"
    b.world.backups["nfs-backup"] = a.world.backups.setdefault("nfs-backup", [])  # one NFS export, two clusters
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", a.token_secret)
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET_B", SECRET_B)
    backend = MixedBackend({
        "a": proxmox.create_backend(settings_for(a, retention_hours=0)),
        "b": proxmox.create_backend(settings_for(b, token_secret_env="FERRY_TEST_PVE_SECRET_B",
                                                 storage_map={"local-zfs": "tank"}, bridge_map={"vmbr0": "vmbr1"}))})
    backend.members["a"].shell = NodeShell(a.world)  # `pct unlock` on A's nodes
    backend.discover()
    yield a, b, backend
    backend.close()
    b.stop()


def _config(world, vmid: int) -> dict:
    conf = dict(world.guests[vmid].config())
    return {k: v for k, v in conf.items() if k not in ("digest", "lock", "rootfs")}


def _expected_on_b(before: dict) -> dict:
    return {k: (v.replace("bridge=vmbr0", "bridge=vmbr1") if k.startswith("net") else v) for k, v in before.items()}


def _source_kept_until_verified(a_world, seen: list[str]) -> StepHooks:
    """Whether the source is still in cluster A after each step."""
    def after(step: str, spec, ok: bool) -> None:
        seen.append(f"{step}:{'present' if int(spec.ct) in a_world.guests else 'gone'}")
    return StepHooks(after=after)


def test_remote_migrate_moves_the_container_to_the_other_cluster(clusters, tmp_path):
    a, b, backend = clusters
    before = _config(a.world, 101)
    seen: list[str] = []
    run = run_move(backend, MoveOrder("101", "pve1", "pveb1", method="restart"), tmp_path,
                   _source_kept_until_verified(a.world, seen))
    assert run.state == "succeeded", run.message
    assert 101 not in a.world.guests  # left cluster A ...
    copy = b.world.guests[101]
    assert (copy.node, copy.status, copy.storage, copy.lock) == ("pveb1", "running", "tank", None)  # ... is on B
    assert _config(b.world, 101) == _expected_on_b(before)  # same config, bridge mapped, same MACs
    assert seen == ["preflight:present", "prepare:present", "presync:present", "cutover:present",
                    "verify:present", "cleanup:gone"]  # deleted only after the copy verified
    (call,) = [c for c in a.world.calls if c["path"] == "/nodes/pve1/lxc/101/remote_migrate"]
    sent = call["params"]
    assert (sent["target-storage"], sent["target-bridge"], sent["delete"], sent["restart"]) == (
        "local-zfs:tank", "vmbr0:vmbr1", "0", "1")
    assert f"host=127.0.0.1,port={b.port}" in sent["target-endpoint"]
    assert f"fingerprint={fingerprint_of(_der(b))}" in sent["target-endpoint"]  # pinned, from a verified TLS link
    assert [c["path"] for c in b.world.calls if c["method"] == "POST"] == ["/nodes/pveb1/lxc/101/mtunnel"]
    journal = run.api()
    remote = next(e for e in journal if e.what.endswith("/remote_migrate"))
    assert b.token_secret not in str(remote.detail) and "PVEAPIToken=ferry@pve!migrate=***" in str(remote.detail)
    assert remote.detail["upid"].split(":")[5:7] == ["vzmigrate", "101"]  # the task ferry followed
    changes = {f"{c['method']} {c['path']}" for d in (a, b) for c in d.world.calls
               if c["method"] != "GET" and not c["path"].endswith("/mtunnel")}
    assert changes <= {e.what for e in journal}  # every change ferry made is journaled
    assert all(cited(*e.what.split(" ", 1)) for e in journal)  # and each one cited upstream
    unlock = [i for i, e in enumerate(run.journal) if e.what == ["pct", "unlock", "101"]]
    delete = [i for i, e in enumerate(run.journal) if e.what == "DELETE /nodes/pve1/lxc/101"]
    assert unlock and delete and unlock[0] < delete[0]


def _der(double) -> bytes:
    import ssl

    pem = ssl.get_server_certificate((double.host, double.port))
    return ssl.PEM_cert_to_DER_cert(pem)


def test_a_cluster_without_remote_migrate_is_left_by_dump_and_restore(clusters, tmp_path):
    a, b, backend = clusters
    for node in a.world.nodes.values():
        node.version = "7.2-7"  # before remote migration (7.3): the route does not exist
    before = _config(a.world, 104)
    seen = []
    run = run_move(backend, MoveOrder("104", "pve1", "pveb1", method="restart"), tmp_path,
                   _source_kept_until_verified(a.world, seen))
    assert run.state == "succeeded" and run.method == "dump", run.message
    assert run.fell_back
    refused = [c for c in a.world.calls if c["path"].endswith("/remote_migrate")]
    assert [c["status"] for c in refused] == [501]
    assert any("does not offer remote_migrate" in e for e in run.events)
    (restore,) = [c for c in b.world.calls if (c["method"], c["path"]) == ("POST", "/nodes/pveb1/lxc")]
    assert restore["params"]["ostemplate"].startswith("nfs-backup:backup/vzdump-lxc-104-")
    assert (restore["params"]["restore"], restore["params"]["storage"], "unique" in restore["params"]) == (
        "1", "tank", False)
    assert 104 not in a.world.guests
    copy = b.world.guests[104]
    assert (copy.node, copy.status, copy.storage) == ("pveb1", "running", "tank")
    assert _config(b.world, 104) == _expected_on_b(before)
    assert seen[-2:] == ["verify:present", "cleanup:gone"]  # deleted only after the copy verified
    assert all(s.endswith("present") for s in seen[:-1])
    assert not [e for e in run.journal if e.what == ["pct", "unlock", "104"]]  # a dump leaves no lock
    for entry in run.api():
        method, path = entry.what.split(" ", 1)
        assert set(entry.detail["params"]) <= ENDPOINTS[(method, cited(method, path))][0], entry.what


def test_a_target_node_the_endpoint_does_not_answer_for_is_reached_by_dump(clusters, tmp_path):
    a, b, backend = clusters
    run = run_move(backend, MoveOrder("101", "pve1", "pveb2", method="restart"), tmp_path)
    assert run.state == "succeeded" and run.method == "dump", run.message
    assert any("mixed.clusters.b.node_hosts.pveb2" in e for e in run.events)  # why, and what to set
    assert not [c for c in a.world.calls if c["path"].endswith("/remote_migrate")]
    assert (b.world.guests[101].node, 101 in a.world.guests) == ("pveb2", False)


def test_an_ha_managed_container_does_not_leave_its_cluster(clusters, tmp_path):
    a, b, backend = clusters
    run = run_move(backend, MoveOrder("102", "pve1", "pveb1", method="restart"), tmp_path)
    assert run.state != "succeeded" and "not HA-managed" in run.message, run.message
    assert a.world.guests[102].node == "pve1" and 102 not in b.world.guests
    assert not [c for d in (a, b) for c in d.world.calls if c["method"] != "GET"]


def test_a_copy_that_cannot_land_rolls_back_to_the_running_source(clusters, tmp_path):
    a, b, backend = clusters
    b.world.nodes["pveb1"].storages.pop("tank")  # the mapped storage is missing on the target node
    run = run_move(backend, MoveOrder("101", "pve1", "pveb1", method="restart"), tmp_path)
    assert run.state not in ("succeeded", "running"), run.message
    assert "storage 'tank' does not exist" in run.message
    guest = a.world.guests[101]
    assert (guest.node, guest.status, guest.lock) == ("pve1", "running", None)
    assert 101 not in b.world.guests


@pytest.mark.parametrize("change,status,words", [
    ({"target-storage": "1"}, 500, "remote migration requires explicit storage mapping!"),
    ({"restart": None}, 500, "can't migrate running container without --online or --restart"),
    ({"fingerprint": "AA:" * 31 + "AA"}, 500, "not verified, abort!"),
    ({"vmid": 102}, 400, "cannot migrate HA-managed CT to remote cluster"),
    ({"target-bridge": None}, 400, "property is missing and it is not optional"),
])
def test_the_double_refuses_remote_migrate_in_pves_words(clusters, change, status, words):
    import requests

    a, b, _ = clusters
    endpoint = (f"apitoken=PVEAPIToken={b.token_id}={SECRET_B},host={b.host},port={b.port},"
                f"fingerprint={change.get('fingerprint') or fingerprint_of(_der(b))}")
    params = {"target-endpoint": endpoint, "target-storage": "local-zfs:tank", "target-bridge": "1", "restart": 1}
    params.update({k: v for k, v in change.items() if k in params and v is not None})
    params = {k: v for k, v in params.items() if not (k in change and change[k] is None)}
    reply = requests.post(f"{a.url}/nodes/pve1/lxc/{change.get('vmid', 101)}/remote_migrate", data=params,
                          headers={"Authorization": f"PVEAPIToken={a.token_id}={a.token_secret}"},
                          verify=str(a.ca_file), timeout=10)
    assert reply.status_code == status and words in (reply.reason + reply.text), (reply.reason, reply.text)
    assert a.world.guests[101].lock is None and 101 not in b.world.guests  # nothing started


@pytest.mark.parametrize("crash_after", ["cutover", "verify"])
def test_each_step_repeated_or_resumed_after_a_crash_moves_the_container_once(clusters, tmp_path, crash_after):
    from tests.integration.conformance.harness import SagaStore

    a, b, backend = clusters
    store = SagaStore(tmp_path)
    first = store.run(backend, MoveOrder("104", "pve1", "pveb1", method="restart"),
                      StepHooks(repeat=True, crash_after=crash_after))
    assert first.state == "running"  # the engine died after the step acted, before it recorded so
    run = store.resume(backend, first.job_id, first.move_id, StepHooks(repeat=True))
    assert run.state == "succeeded", run.message
    assert 104 not in a.world.guests and (b.world.guests[104].node, b.world.guests[104].status) == ("pveb1", "running")
    assert len([c for c in a.world.calls if c["path"].endswith("/remote_migrate")]) == 1  # moved once


def test_recovery_planned_onto_another_proxmox_cluster_is_one_line_exit_2(make_double, tmp_path):  # noqa: F811
    """A dead node whose cluster's other node is in maintenance: its backup would land in
    cluster B, where ferry cannot restore a Proxmox archive of cluster A; refused by name."""
    from tests.doubles.pvedouble.backups import add_archive
    from tests.integration.proxmox.test_proxmox_cli import write_config
    from tests.integration.sim.test_cli import assert_one_line_error, ferry

    nodes = small_fleet().nodes
    alone = small_fleet().model_copy(update={"nodes": [nodes[0], nodes[1].model_copy(update={"maintenance": True})],
                                             "containers": [
        c for c in small_fleet().containers if c.id == "104"]})
    a = make_double(alone)
    b = start_double(World.from_inventory(fleet_b()), tmp_path / "pki-b", token_secret=SECRET_B)
    try:
        with a.world.lock:
            add_archive(a.world, a.world.guests[104], "nfs-backup", "nfs-backup:backup/vzdump-lxc-104-1.tar.zst", 1)
            a.world.nodes["pve1"].online = False
        tables = []
        for name, double, secret in (("a", a, a.token_secret), ("b", b, SECRET_B)):
            sub = tmp_path / name
            sub.mkdir()
            body = write_config(sub, double, secret=secret).read_text().split("[proxmox]\n", 1)[1]
            body = body.replace('token_secret_file = "pve-token"', f'token_secret_file = "{sub}/pve-token"')
            tables.append(f'[mixed.clusters.{name}]\nplatform = "proxmox"\n{body}')
        config = tmp_path / "ferry.toml"
        config.write_text('[ferry]\nbackend = "mixed"\nstate_dir = "state"\n' + "".join(tables))
        kept = ferry("plan", "evacuate", "pve1", "--from-backups", "--format", "json", config=config, check=False)
        plan = json.loads(kept.stdout)  # by default a container stays in its cluster: not planned
        assert not plan["moves"] and [u["ct"] for u in plan["unplaced"]] == ["104"], kept.stdout
        config.write_text('[ferry]\nbackend = "mixed"\nstate_dir = "state"\n[policy]\ncluster_crossings = ["*"]\n'
                          + "".join(tables))
        done = ferry("plan", "evacuate", "pve1", "--from-backups", "--format", "json", config=config, check=False)
        assert_one_line_error(done, "node='pve1'", "proxmox cluster a onto proxmox cluster b", "no such path")
    finally:
        b.stop()


def test_a_dump_between_clusters_without_a_shared_backup_storage_stops_before_any_change(clusters, tmp_path):
    from dataclasses import replace

    a, b, backend = clusters
    target = backend.members["b"]
    target.settings = replace(target.settings, backup_storage="b-only")
    run = run_move(backend, MoveOrder("104", "pve1", "pveb1", method="dump"), tmp_path)
    assert run.state != "succeeded" and "backup storage in both clusters" in run.message, run.message
    assert "mixed.clusters.<name>.backup_storage" in run.message
    assert not [c for d in (a, b) for c in d.world.calls if c["method"] != "GET"]
    assert (a.world.guests[104].node, a.world.guests[104].status) == ("pve1", "running")
