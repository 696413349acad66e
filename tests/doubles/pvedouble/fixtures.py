"""pytest fixtures: a double serving a small default fleet, or one built from any snapshot.

Import into a conftest or a test module: ``from tests.doubles.pvedouble.fixtures import pve_double``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.model import Inventory
from tests.doubles.pvedouble.server import PveDouble, start_double
from tests.doubles.pvedouble.world import World


def settings_for(double: PveDouble, **overrides: Any) -> dict[str, Any]:
    """A ``[proxmox]`` table pointing at ``double`` with TLS verified against its CA (the token
    secret is read from ``FERRY_TEST_PVE_SECRET``)."""
    table = {"host": double.host, "port": double.port, "token_id": double.token_id,
             "token_secret_env": "FERRY_TEST_PVE_SECRET", "ca_file": str(double.ca_file),
             "poll_interval_s": 0.005, "lock_wait_s": 10.0, "task_timeout_s": 20.0, "ha_timeout_s": 10.0,
             "backup_storage": "nfs-backup", "timeout_s": 5.0}
    table.update(overrides)
    return table


def small_fleet() -> Inventory:
    """Three nodes, local ZFS + shared Ceph + shared NFS backup storage, four containers."""
    def node(name: str) -> dict:
        return {"name": name, "cpus": 16, "memory_mb": 65536, "cpu_usage": 0.25, "kernel": "6.8.12-4-pve",
                "version": "8.3.1", "storage": {
                    "local-zfs": {"total_gb": 1000, "used_gb": 100, "shared": False},
                    "ceph": {"total_gb": 4000, "used_gb": 1000, "shared": True},
                    "nfs-backup": {"total_gb": 8000, "used_gb": 10, "shared": True}}}
    cts = [
        {"id": "101", "node": "pve1", "name": "web-101", "cpus": 2, "cpu_usage": 0.35, "memory_mb": 2048,
         "memory_used_mb": 900, "disk_gb": 8, "storage": "local-zfs", "ips": ["203.0.113.10"],
         "tags": ["plb_anti_affinity_web"]},
        {"id": "102", "node": "pve1", "name": "web-102", "cpus": 2, "cpu_usage": 0.1, "memory_mb": 2048,
         "memory_used_mb": 700, "disk_gb": 8, "storage": "ceph", "ips": ["203.0.113.11"], "ha": True},
        {"id": "103", "node": "pve2", "name": "db-103", "status": "stopped", "cpus": 4, "memory_mb": 8192,
         "disk_gb": 32, "storage": "local-zfs", "ips": ["203.0.113.12"], "tags": ["plb_pin_pve2"]},
        {"id": "104", "node": "pve1", "name": "mail-104", "cpus": 1, "cpu_usage": 0.5, "memory_mb": 1024,
         "memory_used_mb": 512, "disk_gb": 4, "storage": "local-zfs", "ips": ["203.0.113.13"]},
    ]
    return Inventory.model_validate({"nodes": [node("pve1"), node("pve2"), node("pve3")], "containers": cts})


@pytest.fixture
def make_double(tmp_path: Path) -> Iterator[Callable[..., PveDouble]]:
    """Factory: ``make_double(inventory, time_scale=...)`` starts a double; all stop at teardown."""
    started: list[PveDouble] = []

    def factory(inventory: Inventory | None = None, **world_kwargs) -> PveDouble:
        world = World.from_inventory(inventory or small_fleet(), **world_kwargs)
        double = start_double(world, tmp_path / f"pki{len(started)}")
        started.append(double)
        return double

    yield factory
    for double in started:
        double.stop()


@pytest.fixture
def pve_double(make_double: Callable[..., PveDouble]) -> PveDouble:
    """A double serving :func:`small_fleet` on 127.0.0.1."""
    return make_double()
