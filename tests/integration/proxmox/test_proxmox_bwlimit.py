"""The node's bandwidth budget reaches the Proxmox API: every call that copies data (migrate,
vzdump, restore) carries ``bwlimit`` = the move's share in KiB/s, the double paces its simulated
copy by it, and the double checks ``bwlimit`` as the real schema does (minimum 0; an integer for
vzdump, a number for migrate and restore)."""

from __future__ import annotations

import pytest

from adapters.proxmox import create_backend
from adapters.proxmox.client import Api, ApiFailure
from fleet.policy import Policy
from service.movespec import build_spec
from service.store import MoveRow
from tests.doubles.journal_recorder import Recorder
from tests.doubles.pvedouble.backups import BACKUP_BYTES_S
from tests.doubles.pvedouble.fixtures import make_double, pve_double, settings_for  # noqa: F401 - fixtures
from tests.doubles.pvedouble.world import SIM_SHUTDOWN_S, SIM_START_S
from tests.integration.conformance.harness import MoveOrder, MoveRun, StepHooks, run_move

#: pve1's budget, shared by two moves at once: 20 MB/s each, 20480 KiB/s.
POLICY = Policy(max_outgoing_per_node=2, node_bandwidth_budget_mb_s={"pve1": 40.0})
SHARE_KIB = 20480
COPYING_CALLS = {"/migrate": "migrate", "/vzdump": "vzdump", "/lxc": "restore"}


def _spec(ct: str, target: str, method: str):
    return build_spec(MoveRow(ct=ct, source="pve1", target=target, method=method, options={}), 1, POLICY)


def _move(backend, ct: str, target: str, method: str, journal: Recorder, tmp_path) -> MoveRun:
    """One move of ``ct`` out of pve1 through the real saga, under POLICY's bandwidth budget."""
    run = run_move(backend, MoveOrder(ct, "pve1", target, method), tmp_path / ct, StepHooks(tap=journal),
                   policy=POLICY)
    assert run.state == "succeeded", run.message
    return run


def test_every_copying_call_carries_the_share_and_the_double_paces_by_it(pve_double, monkeypatch, tmp_path) -> None:  # noqa: F811
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", pve_double.token_secret)
    world = pve_double.world
    # proxmox.bwlimit_kib above the share: the smaller one (the share) is sent
    backend = create_backend(settings_for(pve_double, presync=False, bwlimit_kib=51200))
    journal = Recorder()
    sizes = {vmid: world.guests[vmid].disk_used for vmid in (101, 104)}
    migrated, dumped = _spec("104", "pve2", "restart"), _spec("101", "pve3", "dump")
    assert not _move(backend, "104", "pve2", "restart", journal, tmp_path).cleanup_pending
    assert _move(backend, "101", "pve3", "dump", journal, tmp_path).cleanup_pending
    seen = backend.observe(migrated)  # what the engine would journal on resuming: both ends, as they are
    assert (seen.source.status, seen.target.status, seen.target.node) == ("absent", "running", "pve2")
    seen = backend.observe(dumped)  # the retired source stays, stopped, for its retention
    assert (seen.source.status, seen.source.ips, seen.target.status, seen.target.ips) == \
        ("stopped", (), "running", ("203.0.113.10",))
    sent = {COPYING_CALLS[suffix]: e.detail["params"].get("bwlimit") for e in journal.api()
            for suffix in COPYING_CALLS if e.what.startswith("POST") and e.what.endswith(suffix)}
    assert sent == {"migrate": SHARE_KIB, "vzdump": SHARE_KIB, "restore": SHARE_KIB}
    share_bytes_s = SHARE_KIB * 1024
    tasks = {(t.type, t.id): t.sim_seconds for t in world.tasks.values()}
    # the double's link (1000 MiB/s) and backup speed (400 MiB/s) are far above the share
    assert tasks[("vzmigrate", "104")] == pytest.approx(sizes[104] / share_bytes_s + SIM_SHUTDOWN_S + SIM_START_S)
    assert tasks[("vzdump", "101")] == pytest.approx(sizes[101] / share_bytes_s)  # CT already stopped
    restored = next(key for key in tasks if key[0] == "vzcreate")
    assert tasks[restored] == pytest.approx(sizes[101] / share_bytes_s + 1)
    assert sizes[101] / share_bytes_s > 10 * sizes[101] / BACKUP_BYTES_S  # the cap is what paced it


def test_the_smaller_of_setting_and_share_wins(pve_double, monkeypatch, tmp_path) -> None:  # noqa: F811
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", pve_double.token_secret)
    backend = create_backend(settings_for(pve_double, presync=False, bwlimit_kib=1000))
    journal = Recorder()
    _move(backend, "104", "pve2", "restart", journal, tmp_path)
    [migrate] = [e for e in journal.api() if e.what.startswith("POST") and e.what.endswith("/migrate")]
    assert migrate.detail["params"]["bwlimit"] == 1000


@pytest.mark.parametrize("path,params,why", [
    ("/nodes/pve1/lxc/104/migrate", {"target": "pve2", "restart": 1, "bwlimit": -1}, "minimum value of 0"),
    ("/nodes/pve1/vzdump", {"vmid": "104", "storage": "nfs-backup", "bwlimit": 1.5}, "type check ('integer')"),
    ("/nodes/pve1/vzdump", {"vmid": "104", "storage": "nfs-backup", "bwlimit": -5}, "minimum value of 0"),
    ("/nodes/pve2/lxc", {"vmid": 900, "ostemplate": "nfs-backup:backup/x.tar.zst", "restore": 1,
                         "bwlimit": "fast"}, "type check ('number')"),
])
def test_double_checks_bwlimit_like_the_schema(pve_double, monkeypatch, path, params, why) -> None:  # noqa: F811
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", pve_double.token_secret)
    backend = create_backend(settings_for(pve_double))
    with pytest.raises(ApiFailure) as refused:
        Api(backend.client, Recorder()).post(path, **params)
    assert refused.value.status == 400 and why in refused.value.errors["bwlimit"]
    assert pve_double.world.guests[104].node == "pve1" and not pve_double.world.tasks
