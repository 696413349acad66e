"""Recovery from backups, piece by piece: the pure planner, the fence, OpenVZ's unreachable node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.base import JournalEntry, MoveSpec, PermanentError, StepContext, TransientError
from adapters.openvz.backend import OpenVZBackend
from adapters.openvz.settings import load_settings
from adapters.openvz.ssh import Result
from adapters.restore import Backup, newest_backups, run_fence_command
from adapters.sim.backups import SimRestore
from fleet.errors import InputError
from fleet.model import Inventory
from fleet.plan import Plan
from fleet.policy import Policy
from planners.backups import Archive, describe_age, plan_from_backups
from service.recovery import refuse_offline

NOW = 1_800_000_000.0


def fleet() -> Inventory:
    node = {"cpus": 16, "memory_mb": 32768, "storage": {"local": {"total_gb": 1000},
                                                        "ceph": {"total_gb": 5000, "shared": True}}}
    cts = [{"id": "101", "node": "a", "memory_mb": 4096, "disk_gb": 40, "storage": "local"},
           {"id": "102", "node": "a", "memory_mb": 4096, "disk_gb": 10, "storage": "local"},
           {"id": "103", "node": "a", "memory_mb": 2048, "disk_gb": 10, "storage": "ceph", "ha": True},
           {"id": "104", "node": "a", "memory_mb": 1024, "disk_gb": 10, "storage": "local"},
           {"id": "201", "node": "b", "memory_mb": 26000, "disk_gb": 10, "storage": "local"}]
    nodes = [{"name": n, **node, "online": n != "a"} for n in ("a", "b", "c")]
    return Inventory.model_validate({"nodes": nodes, "containers": cts, "rules": {"anti_affinity": [["101", "102"]]}})


ARCHIVES = {"101": Archive("bk:backup/vzdump-lxc-101.tar.zst", NOW - 3600, 4 << 30, "bk"),
            "102": Archive("bk:backup/vzdump-lxc-102.tar.zst", NOW - 7200, 1 << 30, "bk")}


def test_the_plan_restores_what_has_a_backup_follows_ha_and_names_the_lost() -> None:
    plan = plan_from_backups(fleet(), "a", ARCHIVES, Policy(default_link_mb_s=512), now=NOW)
    moves = {m.ct: m for m in plan.moves}
    assert set(moves) == {"101", "102", "103"}
    assert moves["101"].to != moves["102"].to  # anti-affinity holds
    assert "a" not in {m.to for m in plan.moves}  # the dead node receives nothing
    r101 = moves["101"].restore
    assert r101 is not None and (r101.data_age_s, r101.bytes) == (3600, 4 << 30)
    assert moves["101"].predicted.duration_s == pytest.approx(4096 / 512 + Policy().start_s)
    assert moves["103"].restore is not None and moves["103"].restore.ha and moves["103"].restore.data_age_s == 0
    assert plan.recovery is not None and plan.recovery.oldest_data_age_s == 7200
    assert plan.recovery.unrecoverable == ["104"] and "unrecoverable" in plan.unplaced[0].reason
    assert {m.method for m in plan.moves} == {"dump"}
    again = plan_from_backups(fleet(), "a", ARCHIVES, Policy(default_link_mb_s=512), now=NOW)
    assert again.to_json() == plan.to_json()  # deterministic
    assert Plan.model_validate_json(plan.to_json()).to_json() == plan.to_json()  # round-trips


def test_newest_backup_wins_and_ages_read_as_people_say_them() -> None:
    old, new = Backup("101", "x-old", 10.0, 5), Backup("101", "x-new", 20.0, 5)
    assert newest_backups([new, old, Backup("102", "y", 1.0, 1)])["101"] == new
    assert [describe_age(s) for s in (42, 600, 7200, 3 * 86400)] == ["42 s", "10 min", "2.0 h", "3.0 d"]


def test_an_offline_node_is_refused_in_one_line_offering_the_backups() -> None:
    with pytest.raises(InputError) as caught:
        refuse_offline(fleet(), ["b", "a"])
    assert caught.value.key == "node" and caught.value.value == "a"
    assert "--from-backups" in caught.value.line() and "\n" not in caught.value.line()
    refuse_offline(fleet(), ["b"])  # a live node passes


def _spec(**fields: Any) -> MoveSpec:
    return MoveSpec("101", "a", "c", "dump", archive="bk:1", **fields)


def test_the_fence_runs_its_command_and_journals_it() -> None:
    seen: list[JournalEntry] = []
    ctx = StepContext(journal=seen.append)
    run_fence_command(_spec(fence_command=("sh", "-c", "test {node} = a")), ctx)
    assert seen[-1].status == 0 and seen[-1].what == ["sh", "-c", "test a = a"]
    with pytest.raises(PermanentError, match="PDU says no"):
        run_fence_command(_spec(fence_command=("sh", "-c", "echo PDU says no >&2; exit 1")), ctx)
    assert seen[-1].status == 1
    with pytest.raises(PermanentError, match="cannot run"):
        run_fence_command(_spec(fence_command=("/nonexistent/fence",)), ctx)


def test_no_fence_no_start() -> None:
    steps = SimRestore.__new__(SimRestore)  # the fence and the start guard need no world
    with pytest.raises(PermanentError, match="not fenced"):
        steps.fence(_spec(), StepContext())
    with pytest.raises(PermanentError, match="not fenced"):
        steps.start(_spec(), StepContext())


class _Shell:
    """n1 cannot be reached; n2 answers like a small empty node."""

    def run(self, node: str, argv: list[str], journal: Any, **kw: Any) -> Result:
        if node == "n1":
            raise TransientError("n1: connection refused")
        if argv[:2] == ["sh", "-c"] and "meminfo" in argv[2]:
            return Result(0, "4\n5.10.0\nMemTotal: 8388608 kB\n0.20 0.1 0.1\nfs 104857600 10485760 x\n", "")
        return Result(0, "[]" if argv[0] == "vzlist" else "", "")


def test_an_unreachable_openvz_node_is_reported_offline(tmp_path: Path) -> None:
    for name in ("id", "known"):
        (tmp_path / name).write_text("x")
    settings = load_settings({"nodes": {"n1": {"host": "10.0.0.1"}, "n2": {"host": "10.0.0.2"}},
                              "identity_file": str(tmp_path / "id"), "known_hosts_file": str(tmp_path / "known")})
    inv = OpenVZBackend(settings, shell=_Shell()).discover()  # type: ignore[arg-type]
    assert [(n.name, n.online) for n in inv.nodes] == [("n1", False), ("n2", True)]
    assert not inv.node("n1").receives
