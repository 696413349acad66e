"""The lifecycle module is the one home of job and move states: no other file spells them, the
job transition table allows exactly what operators and the engine may do, and the step policy
table is what drives the saga."""

from __future__ import annotations

import ast
import dataclasses
import io
import threading
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from adapters.base import Step
from fleet.plan import Goal, Move, Plan
from service.jobs import JobConflict, control_job, create_job, job_detail, set_job_state
from service.lifecycle import (
    CONTROLS,
    FALLBACK,
    JOB_FINAL,
    STEP_POLICY,
    Cause,
    IllegalTransition,
    JobEvent,
    JobState,
    MoveState,
    OnFailure,
    Phase,
    finished_job_state,
    job_event_for,
    job_transition,
)
from service.runtime import Runtime
from service.saga import MoveSaga
from service.store import JobRow, MoveRow, job_moves, open_database, utcnow
from tests.conftest import REPO, sim_config

# -- no state words outside lifecycle ----------------------------------------------------------
STATE_WORDS = frozenset({*JobState, *MoveState})
#: Also a container's status (fleet.model.Container.status: running / stopped / paused /
#: suspended), which fleet/, planners/ and bench/ speak of; service/ never does as a literal.
CONTAINER_STATUS_WORDS = frozenset({"running", "paused"})
SCANNED = {"service": STATE_WORDS, "fleet": STATE_WORDS - CONTAINER_STATUS_WORDS,
           "planners": STATE_WORDS - CONTAINER_STATUS_WORDS, "bench": STATE_WORDS - CONTAINER_STATUS_WORDS}
ALLOWED = (Path("service/lifecycle.py"), Path("service/migrations"))


def state_literals(source: str, words: frozenset[str]) -> Iterator[tuple[int, str]]:
    """(line, word) of every string token whose value is exactly one of ``words``."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(token.string)
        except (ValueError, SyntaxError):  # an f-string: its words are text, not a state
            continue
        if isinstance(value, str) and value in words:
            yield token.start[0], value


def test_the_scanner_finds_quoted_states_and_only_them() -> None:
    source = 'if m.state == "succeeded" or s in (\'rolled_back\',):\n    say(f"{ct} succeeded", "succeeded now")\n'
    assert list(state_literals(source, STATE_WORDS)) == [(1, "succeeded"), (1, "rolled_back")]


def test_no_job_or_move_state_is_spelled_outside_lifecycle() -> None:
    """service/, fleet/, planners/ and bench/ name states through service.lifecycle (fleet/ and
    planners/ have no business with jobs at all). adapters/ is not scanned: it speaks each
    backend's own words (vzctl / pct container status "running" / "stopped", Proxmox HA
    "started") and may not import service/ (the arrows point inwards), so a job state could not
    be named there through lifecycle anyway. The step phase (started / done / pending) is
    lifecycle.Phase; "pending" is caught here as a state word, "started" / "done" are too common
    as plain words (dict keys such as a job list's "done" count) to ban."""
    found = []
    for folder, words in SCANNED.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO)
            if any(relative == allowed or allowed in relative.parents for allowed in ALLOWED):
                continue
            found += [f"{relative}:{line}: {word!r}" for line, word in state_literals(path.read_text(), words)]
    assert found == [], "use service.lifecycle's names:\n" + "\n".join(found)


def test_state_values_are_the_stored_words() -> None:
    """Existing databases hold these words: changing one would orphan every stored job."""
    assert [s.value for s in JobState] == ["pending", "approved", "running", "paused", "cancelling",
                                          "succeeded", "failed", "cancelled", "rolled_back"]
    assert [s.value for s in MoveState] == ["pending", "running", "rolling_back", "succeeded", "failed",
                                           "rolled_back", "skipped", "cancelled", "yielded"]


# -- job transitions ---------------------------------------------------------------------------
#: What each operator control does from each state (written out, not derived from the table).
EXPECTED_CONTROLS = {
    "approve": {"pending": "approved"},
    "pause": {"approved": "paused", "running": "paused"},
    "resume": {"paused": "approved", "pending": "approved", "approved": "approved", "running": "approved"},
    "cancel": {"pending": "cancelling", "approved": "cancelling", "running": "cancelling",
               "paused": "cancelling"},
}
REFUSALS = {
    "approve": "only a job that is pending can be approved",
    "pause": "only a job that is approved or running can be paused",
    "resume": "only a job that is paused or pending or approved or running can be resumed",
    "cancel": "only a job that is pending or approved or running or paused can be cancelled",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> sessionmaker[Session]:
    return open_database(f"sqlite:///{tmp_path_factory.mktemp('lifecycle')}/ferry.db")


def job_in(store: sessionmaker[Session], state: JobState) -> int:
    """A stored job (its own container, so jobs never conflict) put straight into ``state``."""
    with store() as session:
        n = session.query(JobRow).count()
    plan = Plan(goal=Goal(kind="rebalance", nodes=[]), inventory_digest="sha256:test",
                moves=[Move(ct=str(1000 + n), to="b", method="restart", **{"from": "a"})])
    job_id = create_job(store, plan, approved=False)
    with store.begin() as session:
        session.get(JobRow, job_id).state = state
    return job_id


def test_controls_are_the_operator_events() -> None:
    assert {str(c) for c in CONTROLS} == set(EXPECTED_CONTROLS)


@pytest.mark.parametrize("state", list(JobState))
@pytest.mark.parametrize("control", sorted(EXPECTED_CONTROLS))
def test_every_control_from_every_state(store: sessionmaker[Session], control: str, state: JobState) -> None:
    job_id = job_in(store, state)
    want = EXPECTED_CONTROLS[control].get(state)
    if want is not None:
        assert control_job(store, job_id, control) == (state, want)
        assert job_detail(store, job_id)["state"] == want
        return
    with pytest.raises(JobConflict) as refused:
        control_job(store, job_id, control)
    assert refused.value.line() == f"job={job_id}: is {state}; {REFUSALS[control]}"
    assert "\n" not in refused.value.line()
    assert job_detail(store, job_id)["state"] == state  # a refusal changes nothing


def test_engine_events_are_not_operator_controls(store: sessionmaker[Session]) -> None:
    job_id = job_in(store, JobState.RUNNING)
    with pytest.raises(ValueError, match="not an operator's control"):
        control_job(store, job_id, "finish")
    assert job_detail(store, job_id)["state"] == JobState.RUNNING


@pytest.mark.parametrize("final", JOB_FINAL)
def test_a_final_job_never_changes_again(store: sessionmaker[Session], final: JobState) -> None:
    job_id = job_in(store, final)
    for new in JobState:
        with pytest.raises(IllegalTransition):
            set_job_state(store, job_id, new)
    assert job_detail(store, job_id)["state"] == final


@pytest.mark.parametrize(("old", "new", "event"), [
    (JobState.APPROVED, JobState.RUNNING, JobEvent.START),
    (JobState.RUNNING, JobState.RUNNING, JobEvent.START),  # resumed after a crash
    (JobState.RUNNING, JobState.SUCCEEDED, JobEvent.FINISH),
    (JobState.RUNNING, JobState.ROLLED_BACK, JobEvent.FINISH),
    (JobState.CANCELLING, JobState.CANCELLED, JobEvent.FINISH),
    (JobState.PAUSED, JobState.FAILED, JobEvent.FINISH),  # paused after the last move ended
    (JobState.RUNNING, JobState.APPROVED, JobEvent.HAND_BACK),
])
def test_the_engine_transitions(old: JobState, new: JobState, event: JobEvent) -> None:
    assert job_transition(event, old, new) == new
    assert job_event_for(old, new) in JobEvent  # what set_job_state asks before it writes


@pytest.mark.parametrize(("old", "new"), [
    (JobState.PENDING, JobState.RUNNING),  # nobody runs a job before it is approved
    (JobState.PENDING, JobState.SUCCEEDED),
    (JobState.CANCELLING, JobState.RUNNING),  # a cancel is not taken back
    (JobState.CANCELLING, JobState.APPROVED),
    (JobState.SUCCEEDED, JobState.RUNNING),
])
def test_illegal_engine_transitions_are_refused(old: JobState, new: JobState) -> None:
    with pytest.raises(IllegalTransition, match=f"a job that is {old} cannot become {new}"):
        job_event_for(old, new)


@pytest.mark.parametrize(("moves", "cancelled", "final"), [
    (["succeeded", "succeeded"], False, JobState.SUCCEEDED),
    (["succeeded", "rolled_back"], False, JobState.FAILED),  # half moved: the operator must look
    (["rolled_back", "skipped"], False, JobState.ROLLED_BACK),  # nothing moved, nothing left broken
    (["failed", "skipped"], False, JobState.FAILED),  # a rollback was impossible
    (["succeeded", "cancelled"], True, JobState.CANCELLED),
    (["succeeded", "yielded"], False, JobState.SUCCEEDED),  # the higher job makes the yielded move
    (["yielded", "yielded"], False, JobState.SUCCEEDED),  # a job that yielded everything did no harm
    (["rolled_back", "yielded"], False, JobState.ROLLED_BACK),
])
def test_the_moves_decide_how_a_job_finishes(moves: list[str], cancelled: bool, final: JobState) -> None:
    assert finished_job_state(moves, cancelled=cancelled) == final


def test_set_job_state_records_start_and_end(store: sessionmaker[Session]) -> None:
    job_id = job_in(store, JobState.APPROVED)
    set_job_state(store, job_id, JobState.RUNNING)
    assert job_detail(store, job_id)["started_at"] is not None
    set_job_state(store, job_id, JobState.SUCCEEDED, "done")
    detail = job_detail(store, job_id)
    assert detail["finished_at"] is not None and detail["message"] == "done"


# -- the step policy table drives the saga -----------------------------------------------------
class Crash(Exception):
    """Stands for the process dying in the middle of a step (not a BackendError: nothing handles it)."""


def one_move(rt: Runtime, ct: str = "104", to: str = "c", method: str = "restart") -> tuple[int, int]:
    """(job id, move id) of a stored, approved job moving ``ct`` off node a."""
    plan = Plan(goal=Goal(kind="evacuate", nodes=["a"]), inventory_digest="sha256:test",
                moves=[Move(ct=ct, to=to, method=method, **{"from": "a"})])
    job_id = create_job(rt.sessions, plan, approved=True)
    with rt.sessions() as session:
        return job_id, job_moves(session, job_id)[0].id


def saga(rt: Runtime, job_id: int, move_id: int, **kwargs: Any) -> MoveSaga:
    return MoveSaga(rt.sessions, rt.backend, rt.config.engine, job_id, move_id, owner="test", **kwargs)


def stored(rt: Runtime, move_id: int) -> MoveRow:
    with rt.sessions() as session:
        move = session.get(MoveRow, move_id)
        assert move is not None
        return move


def events(rt: Runtime, job_id: int) -> list[str]:
    return [str(j["what"]) for j in job_detail(rt.sessions, job_id)["journal"] if j["kind"] == "event"]


def test_the_policy_table_is_consistent() -> None:
    """Only a step the rollback can undo may roll back; the copy steps hold the transfer slot."""
    assert set(STEP_POLICY) == set(Step)
    for step, policy in STEP_POLICY.items():
        assert policy.compensable == (policy.on_failure is OnFailure.ROLL_BACK), step
        assert policy.holds_slot == (step in (Step.PRESYNC, Step.CUTOVER, Step.RESTORE)), step
    assert [s for s, p in STEP_POLICY.items() if not p.cancellable] == [Step.CLEANUP]
    assert FALLBACK == {"live": "restart", "restart": "dump"}


def test_a_refused_step_falls_back_to_the_next_method(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path, faults=[
        {"kind": "refuse_live", "step": "prepare", "ct": "101", "method": "live", "remaining": 1}]))
    job_id, move_id = one_move(rt, "101", "b", "live")
    outcome = saga(rt, job_id, move_id).run()
    move = stored(rt, move_id)
    assert (outcome.state, outcome.cause, move.method) == (MoveState.SUCCEEDED, None, "restart")
    assert move.attempts == 2  # the live try and the restart try
    assert any("live move refused" in e and "falling back to restart" in e for e in events(rt, job_id))


def test_a_refusal_rolls_back_where_the_table_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = Runtime(sim_config(tmp_path, faults=[
        {"kind": "refuse_live", "step": "prepare", "ct": "101", "method": "live", "remaining": 1}]))
    monkeypatch.setitem(STEP_POLICY, Step.PREPARE,
                        dataclasses.replace(STEP_POLICY[Step.PREPARE], on_refusal=OnFailure.ROLL_BACK))
    job_id, move_id = one_move(rt, "101", "b", "live")
    outcome = saga(rt, job_id, move_id).run()
    assert (outcome.state, outcome.cause) == (MoveState.ROLLED_BACK, Cause.FAILURE)
    assert stored(rt, move_id).method == "live" and rt.backend.discover().container("101").node == "a"


def test_a_failed_cleanup_defers_and_the_move_stands(tmp_path: Path) -> None:
    tries = 4  # sim_config's engine.retry_attempts: every try of the cleanup fails
    rt = Runtime(sim_config(tmp_path, faults=[
        {"kind": "unreachable", "step": "cleanup", "ct": "104", "remaining": tries}]))
    job_id, move_id = one_move(rt)
    outcome = saga(rt, job_id, move_id).run()
    move = stored(rt, move_id)
    assert outcome.state == MoveState.SUCCEEDED and "cleanup left for later" in outcome.message
    assert (move.step, move.phase) == (Step.CLEANUP, Phase.PENDING)
    assert move.attempts == 1 + (tries - 1)  # the first try, then one per retried step
    assert (move.claimed_by, move.lease_until) == (None, None)
    assert rt.backend.discover().container("104").node == "c"


def test_cancel_during_a_step_rolls_back_and_ends_cancelled(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path, speedup=50.0))  # 80 GB at 1000 MB/s: ~1.6 s of 0.05 s slices
    job_id, move_id = one_move(rt, "102", "b")
    asked = threading.Event()

    def progress(ct: str, step: str, done: int, total: int) -> None:
        if step == Step.PRESYNC and done:
            asked.set()  # the operator cancels while the copy runs

    outcome = saga(rt, job_id, move_id, progress=progress, cancelled=asked.is_set).run()
    assert (outcome.state, outcome.cause) == (MoveState.CANCELLED, Cause.CANCEL), outcome
    assert outcome.message.startswith("cancelled by operator during presync")
    assert stored(rt, move_id).state == MoveState.CANCELLED
    assert rt.backend.discover().container("102").node == "a"


def test_a_resumed_step_is_observed_first_and_the_lease_is_held_meanwhile(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path, speedup=50.0))
    job_id, move_id = one_move(rt)

    def die_in_presync(ct: str, step: str, done: int, total: int) -> None:
        if step == Step.PRESYNC and done:
            raise Crash

    with pytest.raises(Crash):
        saga(rt, job_id, move_id, progress=die_in_presync).run()
    left = stored(rt, move_id)
    assert (left.state, left.step, left.phase, left.claimed_by) == (MoveState.RUNNING, Step.PRESYNC,
                                                                    Phase.STARTED, "test")
    lease_s = rt.config.engine.lease_s
    assert left.lease_until is not None and 0 < (left.lease_until - utcnow()).total_seconds() <= lease_s
    outcome = saga(rt, job_id, move_id).run()
    assert outcome.state == MoveState.SUCCEEDED, outcome
    journal = job_detail(rt.sessions, job_id)["journal"]
    seen = next(i for i, j in enumerate(journal) if "resuming" in str(j["what"]))
    assert journal[seen]["kind"] == "event" and journal[seen]["step"] == Step.PRESYNC
    assert "observed source a running, destination c" in journal[seen]["what"]
    # the observation comes before the step acts again
    assert any(j["step"] == Step.PRESYNC and j["kind"] == "command" for j in journal[seen:])
    done = stored(rt, move_id)
    assert done.attempts == 2 and (done.claimed_by, done.lease_until) == (None, None)
