"""Re-placement, on the sim backend with injected destination failures and a real store: a move
that fails for good at its destination goes to the next-best allowed node (journaled) instead of
failing the job; the job fails only when no node can take the container."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from fleet.plan import Goal, Move, Plan
from service.engine import Engine
from service.jobs import create_job, job_detail
from service.lifecycle import Cause, JobState, MoveState
from service.move_claims import claim_ready_moves, decide_job
from service.replacement import MAX_REPLACEMENTS, replace_move
from service.runtime import Runtime
from service.saga import MoveSaga
from service.store import MoveRow, utcnow
from tests.conftest import REPO, sim_config

DEMO_FLEET = REPO / "config" / "fleets" / "demo.yaml"

#: 202 (b) is planned onto c; the only other node that may take it is a.
PLAN = Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:test",
            moves=[Move(ct="202", to="c", method="restart", **{"from": "b"})])


def failing_at(*targets: str, kind: str = "start_fails", step: str = "start") -> list[dict[str, object]]:
    return [{"kind": kind, "step": step, "ct": "202", "target": t, "remaining": 5} for t in targets]


def run(tmp: Path, faults: list[dict[str, object]]) -> tuple[Runtime, dict]:
    rt = Runtime(sim_config(tmp, faults=faults))
    job_id = create_job(rt.sessions, PLAN, approved=True)
    rt.engine().run_job(job_id)
    return rt, job_detail(rt.sessions, job_id)


def replacements(detail: dict) -> list[str]:
    return [j["what"] for j in detail["journal"] if "replaced_from" in j["detail"]]


@pytest.mark.parametrize(("kind", "step"), [("start_fails", "start"), ("dest_full", "presync-copy")])
def test_a_destination_failure_re_places_the_move_on_the_next_best_node(tmp_path: Path, kind: str,
                                                                       step: str) -> None:
    rt, detail = run(tmp_path, failing_at("c", kind=kind, step=step))
    assert detail["state"] == JobState.SUCCEEDED, detail["message"]
    [move] = detail["moves"]
    assert (move["to"], move["state"]) == ("a", MoveState.SUCCEEDED)
    [line] = replacements(detail)
    assert line.startswith("c cannot take 202 (") and "re-placed onto a, the next-best allowed node" in line
    assert any(j["what"][:2] == ["sim-fault", step] for j in detail["journal"] if isinstance(j["what"], list))
    where = rt.backend.discover().container("202")
    assert where.node == "a"


def test_the_job_fails_only_when_no_node_can_take_the_container(tmp_path: Path) -> None:
    rt, detail = run(tmp_path, failing_at("c", "a"))
    assert detail["state"] == JobState.ROLLED_BACK  # its only move: nothing moved, nothing broken
    [move] = detail["moves"]
    assert move["state"] == MoveState.ROLLED_BACK and move["to"] == "a"
    assert move["message"].endswith("not re-placed: no other allowed node can take it (tried a, c)")
    assert len(replacements(detail)) == 1  # c, then a; b is its own node
    assert rt.backend.discover().container("202").node == "b"  # it runs where it was


def test_re_placement_is_bounded(tmp_path: Path) -> None:
    """On a six-node fleet where every destination fails, the move tries MAX_REPLACEMENTS more
    nodes after its planned one, then stays rolled back."""
    rt = Runtime(sim_config(tmp_path, fleet=DEMO_FLEET, faults=[
        {"kind": "dest_full", "step": "presync-copy", "ct": "105", "remaining": 100}]))
    plan = Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:test",
                moves=[Move(ct="105", to="n2", method="restart", **{"from": "n1"})])
    job_id = create_job(rt.sessions, plan, approved=True)
    assert rt.engine().run_job(job_id).state == JobState.ROLLED_BACK
    detail = job_detail(rt.sessions, job_id)
    assert len(replacements(detail)) == MAX_REPLACEMENTS
    tried = [j["detail"]["replaced_from"] for j in detail["journal"] if "replaced_from" in j["detail"]]
    assert len({*tried, detail["moves"][0]["to"]}) == MAX_REPLACEMENTS + 1 and "n1" not in tried
    assert detail["moves"][0]["message"].endswith(f"not re-placed: {MAX_REPLACEMENTS + 1} destinations failed "
                                                  f"({', '.join([*tried, detail['moves'][0]['to']])})")


def rolled_back_by_a_saga(rt: Runtime) -> tuple[int, int]:
    """Job and move: one instance ("i1") claimed the move and its saga rolled it back after c
    failed; its engine has not re-placed it yet."""
    job_id = create_job(rt.sessions, PLAN, approved=True)
    (move, claim), = claim_ready_moves(rt.sessions, job_id, "i1", 60.0, busy=set(), admit=lambda m, c: True).claims
    outcome = MoveSaga(rt.sessions, rt.backend, rt.config.engine, job_id, move.id, owner="i1", policy=rt.policy(),
                       move_claim=claim).run()
    assert (outcome.state, outcome.cause) == (MoveState.ROLLED_BACK, Cause.FAILURE)
    return job_id, move.id


def test_no_instance_ends_the_job_between_a_rollback_and_its_re_placement(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path, faults=failing_at("c")))
    job_id, move_id = rolled_back_by_a_saga(rt)
    assert decide_job(rt.sessions, job_id) is None  # another instance, ending a move of the job now
    assert job_detail(rt.sessions, job_id)["state"] == JobState.APPROVED
    replaced = replace_move(rt.sessions, rt.backend, rt.policy(), job_id, move_id)
    assert replaced is not None and replaced.target == "a"
    assert rt.engine().run_job(job_id).state == JobState.SUCCEEDED
    assert rt.backend.discover().container("202").node == "a"


def test_a_re_placement_left_undecided_by_a_dead_instance_is_decided_by_another(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path, faults=failing_at("c")))
    job_id, move_id = rolled_back_by_a_saga(rt)
    with rt.sessions.begin() as session:  # i1 dies: the claim its move kept runs out
        session.execute(update(MoveRow).where(MoveRow.id == move_id).values(lease_until=utcnow()))
    other = Engine(rt.sessions, rt.backend, rt.policy(), rt.config.engine, owner="i2", shared=True)
    assert other.run_job(job_id).state == JobState.SUCCEEDED
    detail = job_detail(rt.sessions, job_id)
    assert len(replacements(detail)) == 1 and detail["moves"][0]["to"] == "a"
    assert rt.backend.discover().container("202").node == "a"
