"""Evacuating a dead Proxmox node from its backups, against the HTTPS API double.

    pve1 dies (offline: its configs unreadable, HTTP 595) with archives of 101 and 104 on the
    shared nfs-backup storage; 102 is an HA resource on Ceph
    ferry evacuate pve1 --from-backups --node-is-fenced --yes (the real console script)
        -> 101, 104: POST /nodes/{planned}/lxc {vmid=<nextid>, ostemplate=<newest volid>, restore=1,
           unique=1, tags} then start; 102: left to the double's HA, followed
    pve1 comes back (its CTs running again, as onboot would): ferry cleanup keeps them stopped,
    onboot=0, tagged ferry-stale; nothing is destroyed
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from adapters.restore import STALE_MARK
from tests.doubles.pvedouble.backups import add_archive
from tests.doubles.pvedouble.fixtures import make_double, pve_double  # noqa: F401 - fixtures
from tests.doubles.pvedouble.server import PveDouble
from tests.integration.proxmox.test_proxmox_cli import write_config
from tests.integration.sim.test_cli import assert_one_line_error, ferry

DAY = 86400


def kill_pve1(double: PveDouble) -> dict[int, str]:
    """Archives of 101 (two) and 104 on nfs-backup, then pve1 dies. The newest volid per CT."""
    world, now = double.world, int(time.time())
    newest = {}
    with world.lock:
        for vmid, ages in ((101, (3 * DAY, 2 * 3600)), (104, (6 * 3600,))):
            for age in ages:
                volid = f"nfs-backup:backup/vzdump-lxc-{vmid}-{now - age}.tar.zst"
                add_archive(world, world.guests[vmid], "nfs-backup", volid, now - age)
                newest[vmid] = volid
        world.nodes["pve1"].online = False
        world.ha_recovery_s = 1e12  # held until the job runs (release_ha_once_restoring)
    return newest


def release_ha_once_restoring(double: PveDouble) -> threading.Thread:
    """Let the double's HA recover 102 once ferry's job restores (so ferry must follow it)."""
    def release() -> None:
        deadline = time.monotonic() + 120
        while not calls(double, "POST", "/lxc") and time.monotonic() < deadline:
            time.sleep(0.01)
        double.world.ha_recovery_s = 60.0
    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


def calls(double: PveDouble, method: str, path_end: str) -> list[dict]:
    return [c for c in double.world.calls if c["method"] == method and c["path"].endswith(path_end)
            and c["status"] == 200]


def test_a_dead_proxmox_node_is_restored_from_its_archives(pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    double = pve_double
    config = write_config(tmp_path, double)
    newest = kill_pve1(double)
    plain = ferry("evacuate", "pve1", "--yes", config=config, check=False)
    assert_one_line_error(plain, "node='pve1'", "offline", "--from-backups")
    plan = json.loads(ferry("plan", "evacuate", "pve1", "--from-backups", "--format", "json", config=config).stdout)
    targets = {m["ct"]: m["to"] for m in plan["moves"]}
    assert set(targets) == {"101", "102", "104"} and "pve1" not in targets.values()
    assert plan["recovery"]["unrecoverable"] == []
    assert 2 * 3600 <= plan["recovery"]["oldest_data_age_s"] < 6 * 3600 + 600  # 104's, not 101's older one

    release_ha_once_restoring(double)
    run = ferry("evacuate", "pve1", "--from-backups", "--node-is-fenced", "--yes", "--format", "json",
                config=config, timeout=240)
    summary = json.loads(run.stdout)
    assert summary["state"] == "succeeded", summary
    assert 6 * 3600 <= summary["rpo_s"] < 6 * 3600 + 600

    restores = calls(double, "POST", "/lxc")
    assert len(restores) == 2  # 102 is HA's: never restored by ferry
    world = double.world
    for call in restores:
        p = call["params"]
        vmid = next(v for v, vol in newest.items() if vol == p["ostemplate"])
        assert call["path"] == f"/nodes/{targets[str(vmid)]}/lxc"
        assert str(p["restore"]) == "1" and str(p["unique"]) == "1" and "force" not in p
        assert f"ferry-from-{vmid}" in str(p["tags"])
        copy = world.guests[int(p["vmid"])]
        assert int(p["vmid"]) != vmid and (copy.node, copy.status) == (targets[str(vmid)], "running")
    ha = world.guests[102]
    assert ha.node != "pve1" and ha.status == "running"  # recovered by HA, followed
    assert not calls(double, "POST", "/lxc/102/status/start")
    detail = json.loads(ferry("job", "show", str(summary["job_id"]), "--format", "json", config=config).stdout)
    assert any("recovered by Proxmox HA" in str(j["what"]) for j in detail["journal"] if j["ct"] == "102")
    fences = [j for j in detail["journal"] if j["step"] == "fence"]
    assert {j["ct"] for j in fences} == {"101", "102", "104"}

    with world.lock:  # pve1 boots again: its containers start, as onboot would start them
        world.nodes["pve1"].online = True
    assert world.guests[101].node == "pve1" and world.guests[101].status == "running"
    ferry("cleanup", config=config, timeout=120)
    for vmid in (101, 104):
        stale = world.guests[vmid]  # never destroyed
        assert (stale.node, stale.status) == ("pve1", "stopped")
        assert stale.extra.get("onboot") == 0 and STALE_MARK in stale.tags
    assert not calls(double, "DELETE", "/lxc/101") and not calls(double, "DELETE", "/lxc/104")
    report = json.loads(ferry("recovery", "stale", "--format", "json", config=config).stdout)
    assert {r["ct"] for r in report if STALE_MARK in r["stale"]} >= {"101", "104"}
