"""A dead node's containers as ferry last saw them: recorded per online node, kept while it is
down, written only when something lasting changed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from fleet.model import Inventory
from service.recovery_seen import SeenContainerRow, last_seen, remember
from service.store import open_database


def fleet(*, a_online: bool = True, used: int = 100, cts: tuple[str, ...] = ("101", "102")) -> Inventory:
    nodes = [{"name": n, "cpus": 8, "memory_mb": 16384, "online": a_online or n != "a"} for n in ("a", "b")]
    containers = [{"id": ct, "node": "a", "memory_mb": 1024, "memory_used_mb": used, "cpu_usage": used / 1000,
                   "disk_gb": 10.02, "ips": [f"10.0.0.{ct[-1]}"]} for ct in cts]
    containers.append({"id": "201", "node": "b", "memory_mb": 512})
    return Inventory.model_validate({"nodes": nodes, "containers": containers})


def stamps(sessions) -> dict[tuple[str, str], object]:
    with sessions() as session:
        return {(r.node, r.ct): r.seen_at for r in session.scalars(select(SeenContainerRow))}


def test_a_node_keeps_its_last_record_while_it_is_offline(tmp_path: Path) -> None:
    sessions = open_database(f"sqlite:///{tmp_path / 'ferry.db'}")
    remember(sessions, fleet())
    remember(sessions, fleet(a_online=False, cts=()))  # a is down: discovery shows none of its CTs
    seen = last_seen(sessions, "a")
    assert [(c.id, c.node, c.ips, c.memory_mb) for c in seen] == [("101", "a", ["10.0.0.1"], 1024),
                                                                  ("102", "a", ["10.0.0.2"], 1024)]
    assert [c.id for c in last_seen(sessions, "b")] == ["201"] and last_seen(sessions, "z") == []


def test_usage_figures_write_nothing_and_a_removed_container_is_forgotten(tmp_path: Path) -> None:
    sessions = open_database(f"sqlite:///{tmp_path / 'ferry.db'}")
    remember(sessions, fleet(used=100))
    before = stamps(sessions)
    remember(sessions, fleet(used=900))  # only usage changed
    assert stamps(sessions) == before
    remember(sessions, fleet(cts=("101",)))  # 102 deleted while a was up
    assert [c.id for c in last_seen(sessions, "a")] == ["101"]
