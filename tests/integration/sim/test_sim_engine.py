"""The engine driving the simulated fleet: evacuations end with a sound world, faults end in
success or a clean rollback, and the journal says what happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.sim.audit import audit_world, statuses
from adapters.sim.world import WorldFile
from fleet.plan import Goal, Move, Plan
from fleet.policy import Policy
from service.jobs import JobConflict, create_job, job_detail
from service.runtime import Runtime
from tests.conftest import sim_config

# Evacuate node a of tests/doubles/fleets/small.yaml by hand (the planner has its own tests): the affinity
# pair goes together, the dns container avoids b (anti-affinity with 201), 105 is stopped.
EVACUATE_A = [("101", "b", "live"), ("102", "b", "live"), ("103", "c", "restart"), ("104", "c", "restart"),
              ("105", "b", "restart")]


def make_plan(moves: list[tuple[str, str, str]] = EVACUATE_A, source: str = "a") -> Plan:
    return Plan(goal=Goal(kind="evacuate", nodes=[source]), inventory_digest="sha256:test",
                moves=[Move(ct=ct, to=to, method=method, **{"from": source}) for ct, to, method in moves])


def run(rt: Runtime, plan: Plan) -> tuple[int, dict]:
    job_id = create_job(rt.sessions, plan, approved=True)
    summary = rt.engine().run_job(job_id)
    return job_id, {"summary": summary, "detail": job_detail(rt.sessions, job_id)}


def world_file(rt: Runtime) -> str:
    return rt.backend.world.path.as_posix()  # creates the world on first use


def moves_by_ct(detail: dict) -> dict[str, dict]:
    return {m["ct"]: m for m in detail["moves"]}


def test_evacuation_ends_with_a_sound_world(sim_runtime: Runtime) -> None:
    before = statuses(world_file(sim_runtime))
    _, result = run(sim_runtime, make_plan())
    assert result["summary"].state == "succeeded", result["detail"]["message"]
    assert audit_world(world_file(sim_runtime), forbidden_nodes=frozenset({"a"})) == []
    assert statuses(world_file(sim_runtime)) == before  # 105 stayed stopped, the rest running
    inv = sim_runtime.backend.discover()
    assert {c.id: c.node for c in inv.containers if c.id in {"101", "102", "105"}} == \
        {"101": "b", "102": "b", "105": "b"}
    journal = result["detail"]["journal"]
    rsyncs = [j for j in journal if j["kind"] == "command" and j["what"][0] == "rsync"]
    assert {j["ct"] for j in rsyncs} >= {"101", "102", "104", "105"}
    assert all(j["step"] in ("presync", "cutover") and j["status"] == 0 for j in rsyncs)
    assert result["summary"].bytes > 0


def test_shared_storage_moves_no_disk_bytes(sim_runtime: Runtime) -> None:
    _, result = run(sim_runtime, make_plan([("103", "c", "restart")]))
    assert result["summary"].state == "succeeded"
    figures = moves_by_ct(result["detail"])["103"]["figures"]
    assert figures["bytes"] < 1024**3  # 30 GB on ceph: only the final delta of memory/dirty data


def test_live_to_an_incompatible_kernel_falls_back_to_restart(sim_runtime: Runtime) -> None:
    _, result = run(sim_runtime, make_plan([("101", "c", "live")]))
    move = moves_by_ct(result["detail"])["101"]
    assert move["state"] == "succeeded" and move["method"] == "restart"
    assert any("falling back to restart" in str(j["what"]) for j in result["detail"]["journal"])


@pytest.mark.parametrize(("kind", "step", "expect"), [
    ("dest_full", "presync-copy", "no space left on device"),
    ("start_fails", "start", "failed to start"),
    ("fail", "verify", "verify failed"),
    ("fail", "preflight", "preflight failed"),
])
def test_fault_at_destination_rolls_back_cleanly(tmp_path: Path, kind: str, step: str, expect: str) -> None:
    rt = Runtime(sim_config(tmp_path, faults=[{"kind": kind, "step": step, "ct": "104", "remaining": 1}]))
    _, result = run(rt, make_plan())
    moves = moves_by_ct(result["detail"])
    assert moves["104"]["state"] == "rolled_back"
    assert expect in moves["104"]["message"] and "runs on a" in moves["104"]["message"]
    assert all(m["state"] == "succeeded" for ct, m in moves.items() if ct != "104")
    assert result["summary"].state == "failed"
    assert audit_world(world_file(rt)) == []
    world = WorldFile(world_file(rt)).read()
    assert world["home"]["104"] == "a" and set(world["copies"]["104"]) == {"a"}  # half-made copy gone


def test_transient_link_drop_is_retried_and_finishes(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path, faults=[{"kind": "link_drop", "step": "presync-copy", "ct": "102",
                                               "remaining": 2}]))
    _, result = run(rt, make_plan())
    assert result["summary"].state == "succeeded"
    retries = [j for j in result["detail"]["journal"] if j["ct"] == "102" and "retrying" in str(j["what"])]
    assert len(retries) == 2
    assert audit_world(world_file(rt), forbidden_nodes=frozenset({"a"})) == []


def test_unreachable_source_during_cleanup_keeps_the_verified_move(tmp_path: Path) -> None:
    # unreachable for all four tries of the cleanup step, reachable again afterwards
    rt = Runtime(sim_config(tmp_path, faults=[{"kind": "unreachable", "step": "cleanup", "ct": "103",
                                               "remaining": 4}]))
    job_id, result = run(rt, make_plan([("103", "c", "restart")]))
    move = moves_by_ct(result["detail"])["103"]
    assert move["state"] == "succeeded" and "cleanup left for later" in move["message"]
    assert move["phase"] == "pending"
    world = WorldFile(world_file(rt)).read()
    assert world["home"]["103"] == "c" and world["copies"]["103"]["a"]["status"] == "stopped"
    assert audit_world(world_file(rt)) == []  # the kept source is stopped: never two running copies
    assert rt.engine().run_cleanups() == [f"job {job_id} 103: cleanup done"]
    assert set(WorldFile(world_file(rt)).read()["copies"]["103"]) == {"c"}  # source retired now
    assert moves_by_ct(job_detail(rt.sessions, job_id))["103"]["phase"] == "done"
    assert rt.engine().run_cleanups() == []


def test_a_container_is_moved_by_one_job_at_a_time(sim_runtime: Runtime) -> None:
    first = create_job(sim_runtime.sessions, make_plan([("103", "c", "restart")]), approved=True)
    with pytest.raises(JobConflict, match=f"is being moved by job {first}"):
        create_job(sim_runtime.sessions, make_plan([("103", "b", "restart")], source="x"), approved=True)
    with pytest.raises(JobConflict, match=f"already being evacuated by job {first}"):
        create_job(sim_runtime.sessions, make_plan([("104", "c", "restart")]), approved=True)
    sim_runtime.engine().run_job(first)
    # once the job is over, its locks are gone
    second = create_job(sim_runtime.sessions, make_plan([("104", "c", "restart")]), approved=True)
    assert second == first + 1


def test_learned_throughput_feeds_the_policy(tmp_path: Path) -> None:
    # the a->c link runs at a quarter of its NICs' speed: what ferry learns is the link, not the
    # default (which a plan shares among the moves leaving a node at once: half of it with two)
    sim_runtime = Runtime(sim_config(tmp_path, link_factor={"a->c": 0.25}))
    assert sim_runtime.policy().link_mb_s == {}
    run(sim_runtime, make_plan([("104", "c", "restart")]))
    learned = sim_runtime.policy().link_mb_s
    assert set(learned) == {"a->c"} and 10 < learned["a->c"] < 1000
    # the next plan's prediction for that link uses the learned figure, not the default
    from planners import plan_evacuate

    inv = sim_runtime.backend.discover()
    default = plan_evacuate(inv, ["a"], sim_runtime.config.policy)
    learned_plan = plan_evacuate(inv, ["a"], sim_runtime.policy())
    slower = [(m.ct, m.predicted.duration_s) for m in learned_plan.moves if m.to == "c" and m.predicted.bytes]
    faster = {m.ct: m.predicted.duration_s for m in default.moves}
    assert slower and all(duration > faster[ct] for ct, duration in slower if ct in faster)


def test_bandwidth_budget_slows_copies_to_the_budget(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path).model_copy(update={"policy": Policy(
        max_outgoing_per_node=1, node_bandwidth_budget_mb_s={"a": 100.0})}))
    _, result = run(rt, make_plan([("104", "c", "restart")]))
    figures = moves_by_ct(result["detail"])["104"]["figures"]
    observed = figures["bytes"] / 1048576 / figures["transfer_s"]
    assert 60 < observed <= 101, observed  # the NIC could do 1000 MB/s; the budget says 100
    assert rt.policy().link_speed("a", "c") <= 100


def test_a_move_waits_for_its_after_and_is_skipped_when_that_fails(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path, faults=[{"kind": "fail", "step": "verify", "ct": "104", "remaining": 1}]))
    plan = make_plan([("104", "c", "restart"), ("105", "c", "restart"), ("103", "b", "restart")])
    plan.moves[1].after = ["104"]
    _, result = run(rt, plan)
    moves = moves_by_ct(result["detail"])
    assert moves["104"]["state"] == "rolled_back"
    assert moves["105"]["state"] == "skipped" and "104" in moves["105"]["message"]
    assert moves["103"]["state"] == "succeeded"
    assert audit_world(world_file(rt)) == []


def test_refusals_fall_back_live_to_restart_to_dump(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path, faults=[
        {"kind": "refuse_live", "step": "prepare", "ct": "101", "method": "live", "remaining": 1},
        {"kind": "refuse_live", "step": "prepare", "ct": "101", "method": "restart", "remaining": 1}]))
    _, result = run(rt, make_plan([("101", "b", "live"), ("102", "b", "live")]))
    move = moves_by_ct(result["detail"])["101"]
    assert move["state"] == "succeeded" and move["method"] == "dump", move
    events = [str(j["what"]) for j in result["detail"]["journal"] if j["ct"] == "101" and j["kind"] == "event"]
    assert any("live move refused" in e and "falling back to restart" in e for e in events)
    assert any("restart move refused" in e and "falling back to dump" in e for e in events)
    assert audit_world(world_file(rt)) == []
    assert rt.backend.discover().container("101").node == "b"


def test_a_transient_failure_of_a_fallbacks_undo_is_retried_not_the_end_of_the_move(tmp_path: Path) -> None:
    """Live refused, and undoing it meets a dropped connection once: the undo is tried again and
    the move goes on by restart, as any step's transient failure is retried."""
    rt = Runtime(sim_config(tmp_path, faults=[
        {"kind": "refuse_live", "step": "prepare", "ct": "101", "method": "live", "remaining": 1},
        {"kind": "unreachable", "step": "rollback", "ct": "101", "remaining": 1}]))
    _, result = run(rt, make_plan([("101", "b", "live")]))
    move = moves_by_ct(result["detail"])["101"]
    assert move["state"] == "succeeded" and move["method"] == "restart", move
    events = [str(j["what"]) for j in result["detail"]["journal"] if j["ct"] == "101" and j["kind"] == "event"]
    assert any(e.startswith("retrying the undo of live: a unreachable") for e in events), events
    assert audit_world(world_file(rt)) == []
