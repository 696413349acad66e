"""A dump move's cleanup only ever stops, tags or purges the source it retired: the identity
recorded on the restored copy (adapters/proxmox/identity.py) is checked first, so a container
that took the source's VMID after a purge (ferry crashed before writing the move down as done)
is left running and untouched, and the cleanup ends instead of waiting forever."""

from __future__ import annotations

import time

import proxmoxer
import pytest

from adapters.base import CleanupPending, MoveSpec, StepContext
from adapters.proxmox import create_backend, identity
from tests.doubles.journal_recorder import Recorder
from tests.doubles.pvedouble.fixtures import make_double, pve_double, settings_for  # noqa: F401 - fixtures
from tests.doubles.pvedouble.model import Guest

SPEC = MoveSpec("104", "pve1", "pve2", method="dump")


def _backend(double, monkeypatch, retention_hours: float):
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", double.token_secret)
    return create_backend(settings_for(double, retention_hours=retention_hours))


def _until_verified(backend, ctx: StepContext) -> int:
    for step in ("preflight", "prepare", "presync", "cutover", "verify"):
        getattr(backend, step)(SPEC, ctx)
    return int(backend.observe(SPEC).target.ct)


def _records(double, copy: int) -> list[str]:
    return [t for t in double.world.guests[copy].tags if t.startswith(identity.RECORD_PREFIX)]


def _writes(double, since: int) -> list[tuple[str, str]]:
    return [(c["method"], c["path"]) for c in double.world.calls[since:] if c["method"] != "GET"]


def _newcomer(double, *, hostname: str = "fresh-104", mac: str = "BC:24:11:AA:BB:CC") -> Guest:
    """Someone creates a new, running CT 104 on pve1 (a fresh random MAC, as pct create gives)."""
    with double.world.lock:
        guest = Guest(104, "pve1", hostname, "running", 1, 512, 100 << 20, 0.1, 4 << 30, "local-zfs",
                      {"net0": f"name=eth0,bridge=vmbr0,hwaddr={mac},ip=203.0.113.99/24,type=veth"}, [])
        double.world.guests[104] = guest
    return guest


def _purge_then_crash(backend, double, ctx: StepContext) -> int:
    """Cleanup purges the source (retention 0); the engine never learns it (crash): it will call
    cleanup again. Returns the copy's VMID."""
    copy = _until_verified(backend, ctx)
    backend.cleanup(SPEC, ctx)
    assert 104 not in double.world.guests
    return copy


@pytest.mark.parametrize("same_hostname", [False, True])
def test_a_container_that_took_the_vmid_after_the_purge_is_left_running(
        pve_double, monkeypatch, same_hostname) -> None:  # noqa: F811
    backend = _backend(pve_double, monkeypatch, retention_hours=0)
    journal = Recorder()
    ctx = StepContext(journal=journal)
    copy = _purge_then_crash(backend, pve_double, ctx)
    # Even a newcomer on the same storage with the old hostname differs: its MAC is new.
    newcomer = _newcomer(pve_double, hostname="mail-104" if same_hostname else "fresh-104")
    before = len(pve_double.world.calls)

    backend.cleanup(SPEC, ctx)  # the re-run: no CleanupPending, nothing destructive
    assert backend.purge_expired(ctx, now=2**40) == []

    assert pve_double.world.guests[104] is newcomer
    assert newcomer.status == "running" and newcomer.tags == [] and newcomer.node == "pve1"
    assert _writes(pve_double, before) == []
    events = [e.detail for e in journal.entries if e.what == "retired source already purged or replaced"]
    assert len(events) == 1 and "matches no record" in events[0]["reason"]
    assert f"on {copy}" in events[0]["reason"]


def test_the_normal_purge_records_retires_and_purges_the_recorded_source(pve_double, monkeypatch) -> None:  # noqa: F811
    backend = _backend(pve_double, monkeypatch, retention_hours=72)
    ctx = StepContext(journal=Recorder())
    source_conf = pve_double.world.guests[104].config()
    copy = _until_verified(backend, ctx)
    fp = identity.of_config(source_conf).fingerprint
    assert _records(pve_double, copy) == [f"ferry-id-104-{fp}-recorded"]  # set by the restore itself
    restore = next(c for c in pve_double.world.calls if c["method"] == "POST" and c["path"] == "/nodes/pve2/lxc")
    assert f"ferry-id-104-{fp}-recorded" in restore["params"]["tags"].split(";")

    with pytest.raises(CleanupPending, match=r"\(retention\)"):
        backend.cleanup(SPEC, ctx)
    assert _records(pve_double, copy) == [f"ferry-id-104-{fp}-retired"]
    assert pve_double.world.guests[104].status == "stopped"
    with pve_double.world.lock:  # the retention ends
        tags = pve_double.world.guests[104].tags
        tags[:] = [t if not t.startswith("ferry-retired-") else "ferry-retired-1" for t in tags]

    backend.cleanup(SPEC, ctx)
    assert 104 not in pve_double.world.guests
    assert [c["path"] for c in pve_double.world.calls if c["method"] == "DELETE"] == ["/nodes/pve1/lxc/104"]
    assert _records(pve_double, copy) == [f"ferry-id-104-{fp}-purged"]
    assert pve_double.world.guests[copy].status == "running"


def test_cleanup_twice_around_a_purge_is_idempotent(pve_double, monkeypatch) -> None:  # noqa: F811
    """A crash right after the DELETE, before the record says "purged": the next cleanup finds
    nothing to do, and a newcomer under the VMID afterwards is still safe."""
    backend = _backend(pve_double, monkeypatch, retention_hours=0)
    ctx = StepContext(journal=Recorder())
    copy = _until_verified(backend, ctx)

    with monkeypatch.context() as patch:
        patch.setattr(identity, "mark", _crash_on("purged"))
        with pytest.raises(ConnectionError):
            backend.cleanup(SPEC, ctx)
    assert 104 not in pve_double.world.guests
    assert [r.rsplit("-", 1)[1] for r in _records(pve_double, copy)] == ["retired"]
    before = len(pve_double.world.calls)
    backend.cleanup(SPEC, ctx)  # the engine's retry: the source is gone, nothing to do
    backend.cleanup(SPEC, ctx)
    assert _writes(pve_double, before) == []

    newcomer = _newcomer(pve_double)
    backend.cleanup(SPEC, ctx)
    assert newcomer.status == "running" and newcomer.tags == [] and _writes(pve_double, before) == []
    assert len([c for c in pve_double.world.calls if c["method"] == "DELETE"]) == 1


def _crash_on(state: str):
    """identity.mark, except that ferry dies (an exception) instead of writing ``state``."""
    real = identity.mark

    def mark(api, record, new_state):
        if new_state == state:
            raise ConnectionError(f"ferry died before recording {state}")
        return real(api, record, new_state)
    return mark


def _restore_own_archive(double, *, as_node: str = "pve1") -> None:
    """Re-create CT 104 from the archive ferry's cutover took (no ``unique``: same MACs)."""
    api = proxmoxer.ProxmoxAPI("127.0.0.1", port=double.port, user="ferry@pve", token_name="migrate",
                               token_value=double.token_secret, verify_ssl=str(double.ca_file), timeout=5)
    volid = [b["volid"] for b in double.world.backups["nfs-backup"] if b["vmid"] == 104][-1]  # the newest
    _wait(api, as_node, api.nodes(as_node).lxc.post(vmid=104, ostemplate=volid, restore=1))
    _wait(api, as_node, api.nodes(as_node).lxc(104).status.start.post())


def _wait(api, node: str, upid: str) -> None:
    deadline = time.monotonic() + 10
    while api.nodes(node).tasks(upid).status.get()["status"] != "stopped":
        assert time.monotonic() < deadline, f"task {upid} did not end"
        time.sleep(0.01)


def test_a_twin_restored_from_the_sources_own_backup_after_the_purge_is_left_alone(
        pve_double, monkeypatch) -> None:  # noqa: F811
    """Same hostname, MACs and volume as the source: only the record's state ("purged") tells them
    apart, and it does."""
    backend = _backend(pve_double, monkeypatch, retention_hours=0)
    journal = Recorder()
    ctx = StepContext(journal=journal)
    _purge_then_crash(backend, pve_double, ctx)
    _restore_own_archive(pve_double)
    assert pve_double.world.guests[104].status == "running"
    before = len(pve_double.world.calls)
    backend.cleanup(SPEC, ctx)
    assert pve_double.world.guests[104].status == "running" and _writes(pve_double, before) == []
    reason = next(e.detail["reason"] for e in journal.entries if e.what == "retired source already purged or replaced")
    assert "already purged" in reason


def test_identity_ignores_what_proxmox_or_operators_change_and_sees_what_a_new_ct_gets() -> None:
    conf = {"arch": "amd64", "ostype": "debian", "hostname": "web", "memory": 512, "cores": 1,
            "rootfs": "local-zfs:subvol-104-disk-0,size=8G", "tags": "a", "digest": "1" * 40,
            "net0": "name=eth0,bridge=vmbr0,hwaddr=bc:24:11:00:68:00,ip=203.0.113.13/24,type=veth"}
    base = identity.of_config(conf).fingerprint
    same = {**conf, "memory": 2048, "cores": 4, "tags": "a;ferry-retired-1", "digest": "2" * 40,
            "lock": "backup", "description": "notes", "rootfs": "local-zfs:subvol-104-disk-0,size=16G",
            "net0": conf["net0"].replace("bc:24", "BC:24")}
    assert identity.of_config(same).fingerprint == base
    for key, value in [("net0", conf["net0"].replace("68:00", "68:01")), ("hostname", "web2"),
                       ("rootfs", "ceph:subvol-104-disk-0,size=8G"), ("ostype", "alpine"),
                       ("mp0", "local-zfs:subvol-104-disk-1,mp=/srv")]:
        assert identity.of_config({**conf, key: value}).fingerprint != base, key
    tag = identity.record_tag(104, base, "recorded")
    assert len(tag) < 40 and tag == tag.lower()


def test_the_sweep_spares_a_twin_that_carries_the_retire_tag(pve_double, monkeypatch) -> None:  # noqa: F811
    """A nightly backup of the retired source (tags and all) restored after the purge: identity
    and retire tag both match, only the record's "purged" state tells, and the sweep obeys it."""
    backend = _backend(pve_double, monkeypatch, retention_hours=72)
    ctx = StepContext(journal=Recorder())
    _until_verified(backend, ctx)
    with pytest.raises(CleanupPending):
        backend.cleanup(SPEC, ctx)
    api = proxmoxer.ProxmoxAPI("127.0.0.1", port=pve_double.port, user="ferry@pve", token_name="migrate",
                               token_value=pve_double.token_secret, verify_ssl=str(pve_double.ca_file), timeout=5)
    time.sleep(1.05 - time.time() % 1)  # archive names have one-second resolution: a new name
    _wait(api, "pve1", api.nodes("pve1").vzdump.post(vmid="104", mode="stop", storage="nfs-backup"))
    assert backend.purge_expired(ctx, now=2**40) == [104]
    _restore_own_archive(pve_double)
    twin = pve_double.world.guests[104]
    assert any(t.startswith("ferry-retired-") for t in twin.tags) and twin.status == "running"
    before = len(pve_double.world.calls)
    assert backend.purge_expired(ctx, now=2**40) == []
    backend.cleanup(SPEC, ctx)
    assert pve_double.world.guests[104] is twin and twin.status == "running"
    assert _writes(pve_double, before) == []
