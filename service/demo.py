"""``ferry demo``: the main job, start to finish, on the built-in simulated fleet.

Shows the fleet, plans the evacuation of its hottest node, executes the plan with live progress
(simulated time, accelerated), then audits the world: every container exactly once, in its
original state, with its original data, on an allowed node.
"""

from __future__ import annotations

import shutil
import time

from rich.console import Console

from adapters.sim.audit import audit_world
from fleet.model import Inventory
from planners import plan_evacuate
from service import render
from service.config import DEMO_FLEET, Config, EngineSection, FerrySection
from service.jobs import create_job
from service.progress import JobProgress
from service.runtime import Runtime


def demo_config(state_dir: str, speedup: float) -> Config:
    return Config(
        ferry=FerrySection(backend="sim", state_dir=state_dir),
        engine=EngineSection(retry_initial_s=0.05, retry_max_s=0.5),  # the default [policy], as everyone's
        sim={"fleet_file": str(DEMO_FLEET), "speedup": speedup},
    )


def hottest_node(inv: Inventory) -> str:
    """The node the demo evacuates: the one with the most memory configured, as a share."""
    loads = render.node_loads(inv)
    return max(loads, key=lambda n: loads[n]["memory"])


def run_demo(console: Console, *, speedup: float = 120.0, state_dir: str = ".ferry/demo") -> int:
    shutil.rmtree(state_dir, ignore_errors=True)
    render.mark_fleet(render.SIMULATED)
    rt = Runtime(demo_config(state_dir, speedup))
    started = time.monotonic()
    inv = rt.backend.discover()
    render.render_inventory(console, inv)
    loads = render.node_loads(inv)
    hot = hottest_node(inv)
    console.rule(f"[bold]{hot} is the hottest node ({loads[hot]['memory'] * 100:.0f} % memory): evacuate it")
    plan = plan_evacuate(inv, [hot], rt.policy())
    render.render_plan(console, plan, inv, limit=15)
    job_id = create_job(rt.sessions, plan, approved=True)
    console.rule(f"[bold]executing job {job_id} (simulated time x{speedup:g})")
    with JobProgress(console, len(plan.moves)) as progress:
        summary = rt.engine(progress=progress.update).run_job(job_id)
    render.render_summary(console, summary.to_dict())
    after = rt.backend.discover()
    render.render_inventory(console, after)
    problems = audit_world(rt.config.backend_settings()["world_file"], forbidden_nodes=frozenset())
    left = [c.id for c in after.on_node(hot)]
    placed = {u.ct for u in plan.unplaced}
    stray = [ct for ct in left if ct not in placed]
    if stray:
        problems.append(f"{len(stray)} containers still on {hot}: {stray[:5]}")
    console.rule("[bold]audit")
    if problems:
        for line in problems:
            console.print(line, style="red", markup=False, highlight=False)
        return 1
    console.print(f"[green]verified: {len(after.containers)} containers, each exactly once, in its original "
                  f"state, with its original data; no IP held twice; {hot} holds "
                  f"{len(left)} (unplaceable: {len(placed)}). Wall time {time.monotonic() - started:.1f} s.")
    return 0
