"""Evacuating a dead node from its backups in the simulated fleet: detect, plan, fence, restore,
resume, and the node's return (its stale copies kept stopped, never deleted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from adapters.restore import STALE_MARK
from adapters.sim.backups import record_backup, set_node_online
from fleet.errors import InputError
from service import recovery
from service.config import load_config
from service.jobs import job_detail, list_jobs
from service.lifecycle import MoveState, Phase
from service.runtime import Runtime
from service.store import MoveRow
from tests.conftest import sim_config
from tests.integration.sim.test_cli import assert_one_line_error, ferry, write_config

#: Backup ages (seconds before now) of the dead node's containers; 103 has none.
AGES = {"101": 3600.0, "102": 7200.0, "104": 600.0, "105": 86400.0}


def kill_node_a(rt: Runtime) -> None:
    """Node a dies after its containers were backed up (101 twice: the newest one counts)."""
    world = rt.backend.world
    now = rt.backend.now()
    record_backup(world, "101", now - 99_000)
    for ct, age in AGES.items():
        record_backup(world, ct, now - age)
    set_node_online(world, "a", False)


@pytest.fixture
def dead_a(tmp_path: Path) -> Runtime:
    rt = Runtime(sim_config(tmp_path))
    kill_node_a(rt)
    return rt


def copies(rt: Runtime, ct: str) -> dict[str, Any]:
    return rt.backend.world.read()["copies"][ct]


def running_nodes(rt: Runtime, ct: str) -> list[str]:
    return sorted(n for n, c in copies(rt, ct).items() if c["status"] == "running")


# -- 1. detect and say --------------------------------------------------------------------------
def test_a_dead_node_is_reported_and_a_plain_evacuate_offers_the_backups(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    kill_node_a(Runtime(load_config(config)))
    inv = json.loads(ferry("inventory", "--format", "json", config=config).stdout)
    assert [n["online"] for n in inv["nodes"] if n["name"] == "a"] == [False]
    assert "offline" in ferry("inventory", config=config).stdout
    assert "node a is offline (unreachable)" in ferry("plan", "evacuate", "a", config=config).stdout
    result = ferry("evacuate", "a", "--yes", config=config, check=False)
    assert_one_line_error(result, "node='a'", "offline", "--from-backups")
    assert list_jobs(Runtime(load_config(config)).sessions) == []  # nothing stored, nothing rolled back


# -- 2. plan from backups -------------------------------------------------------------------------
def test_the_plan_restores_each_newest_backup_under_the_usual_rules(tmp_path: Path) -> None:
    dead_a = Runtime(sim_config(tmp_path, speedup=1.0))  # data ages as written: no restore runs here
    kill_node_a(dead_a)
    plan = recovery.plan_recovery(dead_a, "a").plan
    restores = {m.ct: m for m in plan.moves}
    assert set(restores) == {"101", "102", "104", "105"}
    newest_101 = max(b["taken_at"] for b in dead_a.backend.world.read()["backups"]["101"])
    assert restores["101"].restore is not None and restores["101"].restore.taken_at == newest_101
    for ct, move in restores.items():
        assert move.to != "a" and move.restore is not None
        assert AGES[ct] <= move.restore.data_age_s < AGES[ct] + 60
        assert move.predicted.bytes == move.restore.bytes > 0 and move.predicted.duration_s > 0
    assert restores["101"].to == restores["102"].to  # affinity
    assert restores["104"].to != "b"  # anti-affinity with 201 (dns) on b
    assert plan.recovery is not None and plan.recovery.unrecoverable == ["103"]
    assert plan.recovery.oldest_data_age_s == max(m.restore.data_age_s for m in plan.moves if m.restore)
    assert [u.ct for u in plan.unplaced if "unrecoverable" in u.reason] == ["103"]


def test_the_plan_table_shows_data_ages_the_oldest_and_the_unrecoverable(tmp_path: Path) -> None:
    config = write_config(tmp_path, speedup=1.0)  # data ages as written, within a minute
    kill_node_a(Runtime(load_config(config)))
    out = ferry("plan", "evacuate", "a", "--from-backups", config=config).stdout
    assert "data age" in out and "oldest data: 1.0 d" in out
    assert "│ 1.0 h " in out and "│ 10 min " in out  # 101's newest backup, 104's
    assert "103: unrecoverable" in out
    doc = json.loads(ferry("plan", "evacuate", "a", "--from-backups", "--format", "json", config=config).stdout)
    assert {m["method"] for m in doc["moves"]} == {"dump"}  # contract v1 methods only
    assert all("archive" in m["restore"] and "data_age_s" in m["predicted"] for m in doc["moves"])


# -- 3. fencing first -----------------------------------------------------------------------------
def test_without_a_fence_nothing_is_stored_or_started(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    rt = Runtime(load_config(config))
    kill_node_a(rt)
    result = ferry("evacuate", "a", "--from-backups", "--yes", config=config, check=False)
    assert_one_line_error(result, "--node-is-fenced")
    assert list_jobs(rt.sessions) == []
    assert all(running_nodes(rt, ct) == ["a"] for ct in ("101", "102", "104"))
    done = ferry("evacuate", "a", "--from-backups", "--node-is-fenced", "--yes", config=config)
    assert "Recovery of a (offline) from backups" in done.stdout and "(RPO)" in done.stdout
    assert all(len(running_nodes(rt, ct)) == 2 for ct in ("101", "102", "104"))  # a's record + the copy


def test_a_failing_fence_command_starts_nothing_and_is_journaled(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path))
    rt.config.recovery.fence_command = ["sh", "-c", "echo 'BMC {node}: connection refused' >&2; exit 3"]
    kill_node_a(rt)
    job = recovery.submit_recovery(rt, "a", recovery.fence_of(rt, node_is_fenced=False)).job_id
    assert job is not None
    summary = rt.engine().run_job(job)
    assert summary.counts == {MoveState.ROLLED_BACK: 4}
    for ct in AGES:
        assert running_nodes(rt, ct) == (["a"] if ct != "105" else [])  # only the dead node's records
        assert set(copies(rt, ct)) == {"a"}  # no restored copy left behind
    fences = [j for j in job_detail(rt.sessions, job)["journal"] if j["step"] == "fence" and j["kind"] == "command"]
    assert len(fences) == 4 and all(f["status"] == 3 and f["what"][-1].startswith("echo 'BMC a") for f in fences)
    assert not [j for j in job_detail(rt.sessions, job)["journal"] if j["step"] in ("restore", "start")]


# -- 4. restore as a resumable job -----------------------------------------------------------------
def test_restores_fence_first_land_on_the_planned_nodes_and_report_the_rpo(dead_a: Runtime) -> None:
    submitted = recovery.submit_recovery(dead_a, "a", recovery.fence_of(dead_a, node_is_fenced=True))
    assert submitted.job_id is not None
    summary = dead_a.engine().run_job(submitted.job_id)
    assert summary.state == "succeeded", summary.messages
    planned = {m.ct: m for m in submitted.planned.plan.moves}
    world = dead_a.backend.world.read()
    for ct, move in planned.items():
        # 105 was stopped: it comes back stopped; the dead node's records say what ran there
        assert running_nodes(dead_a, ct) == ([] if ct == "105" else sorted({"a", move.to}))
        restored = world["copies"][ct][move.to]
        assert restored["restored_from"] == move.restore.archive and restored["checksum"].endswith(
            f"@{int(move.restore.taken_at)}")
    assert summary.rpo_s >= max(AGES.values())
    journal = job_detail(dead_a.sessions, submitted.job_id)["journal"]
    for ct in planned:
        steps = [j["step"] for j in journal if j["ct"] == ct and j["step"]]
        assert steps.index("fence") < steps.index("restore") < (steps.index("start") if ct != "105" else 10**6)


def test_a_restore_interrupted_by_a_crash_resumes_from_the_store(dead_a: Runtime) -> None:
    job = recovery.submit_recovery(dead_a, "a", recovery.Fence(confirmed=True)).job_id
    with dead_a.sessions.begin() as session:  # a ferry died while restoring 101
        move = session.scalars(select(MoveRow).where(MoveRow.job_id == job, MoveRow.ct == "101")).one()
        move.state, move.step, move.phase = MoveState.RUNNING, "restore", Phase.STARTED
    with dead_a.backend.world.transaction() as w:
        w["copies"]["101"][move.target] = {"status": "partial", "bytes": 7, "checksum": None, "storage": "local"}
    summary = dead_a.engine().run_job(job)
    assert summary.state == "succeeded", summary.messages
    assert running_nodes(dead_a, "101") == sorted(["a", move.target])
    events = [str(j["what"]) for j in job_detail(dead_a.sessions, job)["journal"] if j["ct"] == "101"]
    assert any("outcome of restore unknown" in e for e in events)


# -- 5. the node comes back -----------------------------------------------------------------------
def test_the_returning_node_keeps_its_stale_copies_stopped_and_reported(dead_a: Runtime) -> None:
    job = recovery.submit_recovery(dead_a, "a", recovery.Fence(confirmed=True)).job_id
    dead_a.engine().run_job(job)
    waiting = recovery.stale_report(dead_a)
    assert len(waiting) == 4 and all("not back yet" in r["stale"] for r in waiting)
    assert dead_a.engine().run_cleanups() and running_nodes(dead_a, "101").count("a") == 1  # still down
    set_node_online(dead_a.backend.world, "a", True)  # it boots: its copies run again
    assert "a" in running_nodes(dead_a, "101")
    lines = dead_a.engine().run_cleanups()
    assert len(lines) == 4 and all("cleanup done" in line for line in lines)
    for ct in AGES:
        stale = copies(dead_a, ct)["a"]  # never deleted
        assert (stale["status"], stale["onboot"], stale["mark"]) == ("stopped", False, STALE_MARK)
        assert "a" not in running_nodes(dead_a, ct)
        assert len(running_nodes(dead_a, ct)) == (0 if ct == "105" else 1)  # the restored copy serves
    assert running_nodes(dead_a, "103") == ["a"]  # unrecoverable: never touched
    report = recovery.stale_report(dead_a)
    assert len(report) == 4 and all(STALE_MARK in r["stale"] for r in report)


def test_recovering_a_live_node_is_refused(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path))
    with pytest.raises(InputError, match="is online"):
        recovery.plan_recovery(rt, "b")
