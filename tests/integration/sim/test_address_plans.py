"""Address plans through the service: live plans skip addresses active jobs hold, a job records
the addresses it hands out, a stale plan handing one out twice is refused, and the stored move
asks its backend for the new address (MoveSpec.ips)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fleet.networks import Networks
from service import jobs
from service.movespec import build_spec
from service.operations.planning import plan_nodes
from service.operations.requests import NodesPlanRequest
from service.runtime import Runtime
from service.store import job_moves
from tests.conftest import sim_config


def _fleet(tmp: Path) -> Path:
    """Two nodes in lan-a (a2 full), one in lan-b; a1 and a3 each hold one container of lan-a."""
    nodes = [{"name": n, "cpus": 8, "memory_mb": 4096, "storage": {"local": {"total_gb": 100}}}
             for n in ("a1", "a2", "a3", "b1")]
    cts = [{"id": "101", "node": "a1", "memory_mb": 1024, "disk_gb": 1, "storage": "local",
            "ips": ["10.0.1.5"]},
           {"id": "102", "node": "a3", "memory_mb": 1024, "disk_gb": 1, "storage": "local",
            "ips": ["10.0.1.6"]},
           {"id": "103", "node": "a2", "memory_mb": 4096, "disk_gb": 1, "storage": "local",
            "ips": ["10.0.1.7"]}]
    path = tmp / "fleet.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "nodes": nodes, "containers": cts}))
    return path


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    networks = Networks.model_validate({"ttl_s": 60, "subnets": {
        "lan-a": {"subnet": "10.0.1.0/24", "nodes": ["a1", "a2", "a3"]},
        "lan-b": {"subnet": "10.0.2.0/24", "nodes": ["b1"], "gateway": "10.0.2.1",
                  "pool": ["10.0.2.10-10.0.2.11"]}}})
    config = sim_config(tmp_path, fleet=_fleet(tmp_path)).model_copy(update={"networks": networks})
    return Runtime(config)


def test_jobs_hand_out_each_pool_address_once(rt: Runtime):
    first = plan_nodes(rt, "evacuate", NodesPlanRequest(nodes=["a1"])).plan
    (move,) = first.moves
    assert (move.to, move.address.to, move.address.old_address_s) == ("b1", "10.0.2.10", 60)
    # a plan made now, before the first is a job, would hand out the same address
    rival = plan_nodes(rt, "evacuate", NodesPlanRequest(nodes=["a3"])).plan
    assert rival.moves[0].address.to == "10.0.2.10"
    job = jobs.create_job(rt.sessions, first, approved=False)
    with pytest.raises(jobs.JobConflict, match=f"10.0.2.10.*job {job}"):
        jobs.create_job(rt.sessions, rival, approved=False)
    again = plan_nodes(rt, "evacuate", NodesPlanRequest(nodes=["a3"])).plan
    assert again.moves[0].address.to == "10.0.2.11"
    jobs.create_job(rt.sessions, again, approved=False)
    with rt.sessions() as session:
        (row,) = job_moves(session, job)
    spec = build_spec(row, job, None)
    assert spec.ips == ("10.0.2.10/24",) and spec.target == "b1"  # Proxmox nodes: CIDR, new prefix


def test_a_cancelled_job_frees_its_addresses(rt: Runtime):
    first = plan_nodes(rt, "evacuate", NodesPlanRequest(nodes=["a1"])).plan
    job = jobs.create_job(rt.sessions, first, approved=False)
    jobs.control_job(rt.sessions, job, "cancel")
    later = plan_nodes(rt, "evacuate", NodesPlanRequest(nodes=["a1"])).plan
    assert later.moves[0].address.to == "10.0.2.10"
