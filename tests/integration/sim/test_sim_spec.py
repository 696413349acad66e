"""The simulated backend honours the typed MoveSpec: a plan's ``target_storage`` puts the disk on
that storage id (through the engine: plan -> stored move -> MoveSpec), and ``observe`` tells the
truth about both ends at every step."""

from __future__ import annotations

from pathlib import Path

from adapters.base import STEPS, MoveSpec, Step, StepContext, run_step
from adapters.sim import create_backend
from fleet.plan import Goal, Move, Plan
from service.jobs import create_job, job_detail
from service.runtime import Runtime
from tests.conftest import SMALL_FLEET, sim_config


def test_target_storage_from_the_plan_lands_the_disk_there(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path))
    move = Move.model_validate({"ct": "104", "from": "a", "to": "c", "target_storage": "ceph"})
    plan = Plan(goal=Goal(kind="evacuate", nodes=["a"]), inventory_digest="sha256:test", moves=[move])
    job_id = create_job(rt.sessions, plan, approved=True)
    rt.engine().run_job(job_id)
    assert [m["state"] for m in job_detail(rt.sessions, job_id)["moves"]] == ["succeeded"]
    inv = rt.backend.discover()
    assert (inv.container("104").node, inv.container("104").storage) == ("c", "ceph")
    # c's own 30 GB + lic-301's 30 GB; dns-104's 10 GB went to the shared ceph, not c's local
    assert inv.node("c").storage["local"].used_gb == 60.0


def test_observe_tells_each_step_what_both_ends_are(tmp_path: Path) -> None:
    backend = create_backend({"world_file": str(tmp_path / "world.json"), "fleet_file": str(SMALL_FLEET),
                              "speedup": 20000.0})
    spec = MoveSpec("104", "a", "c", owner="job-1", bwlimit_mb_s=500.0)
    seen = {}
    for step in STEPS:
        run_step(backend, step, spec, StepContext())
        now = backend.observe(spec)
        assert not now.both_running, (step, now)
        seen[step] = (now.source.status, now.target.status, now.target.locked_by)
    assert seen[Step.PREPARE] == ("running", "partial", "job-1")
    assert seen[Step.PRESYNC] == ("running", "partial", "job-1")
    assert seen[Step.CUTOVER][:2] == ("stopped", "running")
    assert seen[Step.CLEANUP] == ("absent", "running", None)
    assert backend.observe(spec).target.ips == ("192.0.2.14",)
