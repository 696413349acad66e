"""A pre-empted job re-plans what it has left (its pending moves nobody started) against the fleet
as it will be, when it next starts; or yields when nothing useful is left. Its journal says which.

The fleet changes after the pre-emption here (a node is cordoned), as it does on a real fleet while
a job waits for its window: the plan the lower job was approved with no longer holds."""

from __future__ import annotations

import threading
from pathlib import Path

import yaml
from sqlalchemy import select

from fleet.plan import Goal, Move, Plan
from service import operations as ops
from service.config import load_config
from service.engine import Engine
from service.jobs import create_job, job_detail
from service.lifecycle import JobState, MoveState
from service.nodes import NodeState, set_state
from service.runtime import Runtime
from service.store import LockRow
from tests.conftest import SMALL_FLEET
from tests.integration.concurrency.test_preemption import (
    WAIT_S,
    HeldCopy,
    closed_window_config,
    moves_of,
    waiting_rebalance,
)
from tests.integration.sim.test_api import wait_for


def runtime(tmp: Path, extra_nodes: tuple[str, ...] = ()) -> Runtime:
    """The small fleet (a, b, c) and ``extra_nodes`` like c but empty; windows closed."""
    fleet = yaml.safe_load(SMALL_FLEET.read_text())
    like_c = fleet["nodes"][2]
    for name in extra_nodes:
        storage = {"local": {"total_gb": 1000, "used_gb": 0}, "ceph": dict(like_c["storage"]["ceph"])}
        fleet["nodes"].append({**like_c, "name": name, "storage": storage})
    (tmp / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    config = closed_window_config(tmp)
    config.write_text(config.read_text().replace(str(SMALL_FLEET), str(tmp / "fleet.yaml")))
    return Runtime(load_config(config))


def cordon_c_and_evacuate_a(rt: Runtime) -> int:
    """c stops receiving (the lower job's plan still sends a container there), then on-call
    evacuates a: the evacuation's job id."""
    with rt.sessions.begin() as session:
        set_state(session, "c", NodeState.CORDONED)
    evacuation = ops.submit_nodes(rt, "evacuate", ops.NodesJobRequest(nodes=["a"], approve=True)).job_id
    assert evacuation is not None
    return evacuation


def events(rt: Runtime, job_id: int) -> list[str]:
    return [str(j["what"]) for j in job_detail(rt.sessions, job_id)["journal"] if j["ct"] is None]


def test_a_pre_empted_drain_re_plans_its_remaining_move_onto_a_node_that_can_take_it(tmp_path: Path) -> None:
    rt = runtime(tmp_path, extra_nodes=("d", "e"))
    plan = Plan(goal=Goal(kind="drain", nodes=["b"]), inventory_digest="sha256:test",
                moves=[Move(ct=ct, to=to, method="restart", **{"from": "b"}) for ct, to in [("202", "a"), ("201", "c")]])
    drain = ops.submit_plan(rt, plan, ops.JobOptions(approve=True, window=True))
    evacuation = cordon_c_and_evacuate_a(rt)
    assert moves_of(rt, drain) == {"202": MoveState.YIELDED, "201": MoveState.PENDING}  # a is reserved now
    assert rt.engine().run_job(drain).state == JobState.SUCCEEDED
    detail = job_detail(rt.sessions, drain)
    [moved] = [m for m in detail["moves"] if m["ct"] == "201"]
    assert moved["state"] == MoveState.SUCCEEDED and moved["to"] not in ("a", "b", "c")
    line = events(rt, drain)[-1]
    assert line == (f"re-planned what is left after job {evacuation} took its containers, against the fleet as "
                    f"it will be: 201 now goes to {moved['to']} (was c)")
    assert rt.backend.discover().container("201").node == moved["to"]
    assert rt.engine().run_job(drain).state == JobState.SUCCEEDED  # a re-plan is made once
    assert sum("re-planned" in e for e in events(rt, drain)) == 1


def test_a_pre_empted_rebalance_with_nothing_useful_left_yields(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    lower = waiting_rebalance(rt, [("101", "a", "b"), ("102", "a", "b"), ("104", "a", "c"), ("202", "b", "c")])
    evacuation = cordon_c_and_evacuate_a(rt)
    assert moves_of(rt, lower)["202"] == MoveState.PENDING  # 202 b -> c was left to the rebalance
    assert rt.engine().run_job(lower).state == JobState.SUCCEEDED
    assert set(moves_of(rt, lower).values()) == {MoveState.YIELDED}
    line = events(rt, lower)[-1]
    assert line.startswith(f"re-planned after job {evacuation} took its containers: nothing useful left to move (")
    assert "202: a fresh plan leaves it where it is" in line and line.endswith("; the job yields")
    assert rt.backend.discover().container("202").node == "b"  # nothing moved onto the cordoned c
    with rt.sessions() as session:  # its container is free for another job
        assert session.scalars(select(LockRow).where(LockRow.ct == "202")).all() == []


def test_a_running_job_re_plans_as_soon_as_a_higher_job_takes_some_of_its_moves(tmp_path: Path) -> None:
    rt = runtime(tmp_path, extra_nodes=("d", "e"))
    first = [Move(ct="202", to="d", method="restart", **{"from": "b"})]
    waiting = [Move(ct=ct, to=to, method="restart", after=["202"], **{"from": source})
               for ct, source, to in [("101", "a", "e"), ("102", "a", "e"), ("201", "b", "c")]]
    job_id = create_job(rt.sessions, Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:test",
                                          moves=[*first, *waiting]), approved=True)
    held = HeldCopy()
    runner = threading.Thread(target=Engine(rt.sessions, rt.backend, rt.policy(), rt.config.engine,
                                            progress=held).run_job, args=(job_id,))
    runner.start()
    try:
        assert held.copying.wait(WAIT_S)  # 202 is copying; the others wait for it
        evacuation = cordon_c_and_evacuate_a(rt)
        assert moves_of(rt, job_id)["101"] == MoveState.YIELDED
        wait_for(lambda: any("re-planned" in e for e in events(rt, job_id)), WAIT_S)
        assert moves_of(rt, job_id)["202"] == MoveState.RUNNING  # re-planned without waiting for it
    finally:
        held.release.set()
        runner.join(WAIT_S)
    [line] = [e for e in events(rt, job_id) if "re-planned" in e]
    assert f"after job {evacuation} took its containers" in line and "201" in line
    assert job_detail(rt.sessions, job_id)["state"] == JobState.SUCCEEDED
    assert rt.backend.discover().container("201").node != "c"  # not onto the node cordoned meanwhile
