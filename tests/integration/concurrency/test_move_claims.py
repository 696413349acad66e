"""Moves, not jobs, are the unit of work: engines sharing one store (each with its own connection,
as separate ``ferry serve`` instances) run the moves of one job together; each move is claimed and
run by exactly one of them, the plan's order (``after``) holds, the job's end is recorded once,
and the transfer slots and bandwidth budgets hold across all engines and jobs."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import update

from adapters.base import STEPS, Backend, MoveSpec, Step, StepContext
from fleet.plan import Goal, Plan
from fleet.policy import Policy
from planners import plan_evacuate
from service.engine import Engine, JobSummary
from service.jobs import create_job, job_detail, release_locks
from service.lifecycle import JobState, MoveState
from service.move_claims import MoveLost, claim_ready_moves
from service.runtime import Runtime
from service.saga import MoveSaga
from service.slots import FleetSlots, slots_in_use
from service.store import MoveRow, open_database, utcnow
from tests.conftest import sim_config
from tests.integration.sim.test_chaos import chaos_fleet

WAIT_S = 120.0
COPYING = (Step.PRESYNC, Step.CUTOVER)


class Recorder:
    """What every instance's backend did: step calls as (instance, step, ct) in call order, and
    how many moves copied at once out of and into each node, over all instances."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.copying: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.bwlimits: list[float | None] = []
        self.lock = threading.Lock()


class RecordingBackend:
    """One instance's view of the shared sim world: real steps, recorded in ``recorder``."""

    def __init__(self, inner: Backend, instance: str, recorder: Recorder) -> None:
        self.inner, self.instance, self.recorder = inner, instance, recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def step(self, step: Step, spec: MoveSpec, ctx: StepContext) -> Any:
        rec = self.recorder
        keys = (f"out:{spec.source}", f"in:{spec.target}", "fleet") if step in COPYING else ()
        with rec.lock:
            rec.calls.append((self.instance, step.value, spec.ct))
            rec.copying.update(keys)
            for key in keys:
                rec.peak[key] = max(rec.peak[key], rec.copying[key])
            if step in COPYING:
                rec.bwlimits.append(spec.bwlimit_mb_s)
        try:
            return getattr(self.inner, step.value)(spec, ctx)
        finally:
            with rec.lock:
                rec.copying.subtract(keys)


def _step_method(step: Step) -> Callable[..., Any]:
    return lambda self, spec, ctx: self.step(step, spec, ctx)


for _step in STEPS:
    setattr(RecordingBackend, _step.value, _step_method(_step))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        from tests.integration.concurrency.databases import fresh_database

        return fresh_database(request.getfixturevalue("postgres_url"), tmp_path.name)
    return f"sqlite:///{tmp_path / 'ferry.db'}"


def runtime(tmp_path: Path, url: str, count: int, speedup: float, empty_disks: bool = False) -> Runtime:
    """The chaos fleet (``count`` containers on a); ``empty_disks``: moves that copy nothing, so
    the engines' own work bounds the evacuation."""
    fleet = tmp_path / "fleet.yaml"
    chaos_fleet(fleet, count)
    if empty_disks:
        world = yaml.safe_load(fleet.read_text())
        for ct in world["containers"]:
            ct["disk_gb"] = 0
        fleet.write_text(yaml.safe_dump(world))
    config = sim_config(tmp_path, fleet=fleet, speedup=speedup)
    return Runtime(config.model_copy(update={"ferry": config.ferry.model_copy(update={"database": url})}))


def run_together(rt: Runtime, recorder: Recorder, policy: Policy, job_ids: list[int],
                 instances: int) -> dict[str, JobSummary | BaseException]:
    """Run every job on ``instances`` shared engines at once (one thread per engine and job)."""
    ended: dict[str, JobSummary | BaseException] = {}
    start = threading.Barrier(instances * len(job_ids))

    def instance(name: str, job_id: int) -> None:
        backend = RecordingBackend(rt.backend, name, recorder)
        engine = Engine(open_database(rt.config.database_url), backend, policy, rt.config.engine,  # type: ignore[arg-type]
                        owner=name, shared=True)
        start.wait(WAIT_S)
        try:
            ended[f"{name}/{job_id}"] = engine.run_job(job_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            ended[f"{name}/{job_id}"] = exc

    threads = [threading.Thread(target=instance, args=(f"i{n}", job_id), name=f"i{n}")
               for n in range(instances) for job_id in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert not any(t.is_alive() for t in threads)
    return ended


def test_three_engines_share_one_evacuation_and_each_move_runs_once(
        store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rt = runtime(tmp_path, store_url, count=24, speedup=400.0)
    policy = Policy(max_parallel=3, max_outgoing_per_node=2, max_incoming_per_node=2)
    plan = plan_evacuate(rt.backend.discover(), ["a"], policy)
    for i, move in enumerate(plan.moves[1:6]):  # a chain: each waits for the one before
        move.after = [plan.moves[i].ct]
    job_id = create_job(rt.sessions, plan, approved=True)
    backend = Recorder()
    with caplog.at_level(logging.INFO, logger="ferry.jobs"):
        ended = run_together(rt, backend, policy, [job_id], instances=3)
    assert all(isinstance(e, JobSummary) and e.state == JobState.SUCCEEDED for e in ended.values()), ended
    detail = job_detail(rt.sessions, job_id)
    assert detail["state"] == JobState.SUCCEEDED
    assert {m["state"] for m in detail["moves"]} == {MoveState.SUCCEEDED}
    ends = [r for r in caplog.records if f"job {job_id}" in r.getMessage() and "succeeded" in r.getMessage()]
    assert len(ends) == 1, [r.getMessage() for r in ends]  # the end is recorded once
    preflights = Counter(ct for _, step, ct in backend.calls if step == Step.PREFLIGHT)
    assert set(preflights) == {m.ct for m in plan.moves} and set(preflights.values()) == {1}
    runners = {ct: {i for i, _, c in backend.calls if c == ct} for ct in preflights}
    assert all(len(r) == 1 for r in runners.values()), runners  # no move touched by two engines
    # How the moves spread over the engines: test_every_live_instance_runs_its_share_of_one_evacuation.
    owners = {m["ct"]: m for m in detail["moves"]}
    assert all(owners[ct]["attempts"] == 1 for ct in preflights)
    chain = [m.ct for m in plan.moves[:6]]
    starts = {ct: next(i for i, c in enumerate(backend.calls) if c[2] == ct) for ct in chain}
    ends_at = {ct: max(i for i, c in enumerate(backend.calls) if c[2] == ct) for ct in chain}
    assert all(ends_at[a] < starts[b] for a, b in zip(chain, chain[1:], strict=False))  # `after` held
    assert backend.peak["fleet"] <= policy.max_parallel
    assert backend.peak["out:a"] <= policy.max_outgoing_per_node


@pytest.mark.parametrize("instances", [1, 2, 3])
def test_every_live_instance_runs_its_share_of_one_evacuation(postgres_url: str, tmp_path: Path,
                                                              instances: int) -> None:
    """Fair claims on PostgreSQL: each live instance runs some of the evacuation's moves (an engine
    whose move ends no longer takes every ready move back before the others look); one instance
    alone still runs all of them."""
    from tests.integration.concurrency.databases import fresh_database

    rt = runtime(tmp_path, fresh_database(postgres_url, tmp_path.name), count=24, speedup=2000.0, empty_disks=True)
    policy = Policy(max_parallel=4, max_outgoing_per_node=4, max_incoming_per_node=4)
    plan = plan_evacuate(rt.backend.discover(), ["a"], policy)
    job_id = create_job(rt.sessions, plan, approved=True)
    recorder = Recorder()
    ended = run_together(rt, recorder, policy, [job_id], instances)
    assert all(isinstance(e, JobSummary) and e.state == JobState.SUCCEEDED for e in ended.values()), ended
    runners = {ct: {i for i, _, c in recorder.calls if c == ct} for ct in {m.ct for m in plan.moves}}
    assert all(len(r) == 1 for r in runners.values()), runners  # each move by one instance
    per_instance = Counter(next(iter(r)) for r in runners.values())
    assert set(per_instance) == {f"i{n}" for n in range(instances)}, per_instance
    assert sum(per_instance.values()) == len(plan.moves)


def test_slots_and_bandwidth_budgets_hold_across_jobs_and_engines(store_url: str, tmp_path: Path) -> None:
    rt = runtime(tmp_path, store_url, count=16, speedup=400.0)
    budget = 400.0
    policy = Policy(max_parallel=3, max_outgoing_per_node=2, max_incoming_per_node=1,
                    node_bandwidth_budget_mb_s={"a": budget})
    inv = rt.backend.discover()
    plans = [plan_evacuate(inv, ["a"], policy)]
    halves = [plans[0].model_copy(update={"moves": plans[0].moves[i::2]}) for i in range(2)]
    halves[1] = halves[1].model_copy(update={"goal": Goal(kind="rebalance")})
    job_ids = [create_job(rt.sessions, half, approved=True) for half in halves]
    backend = Recorder()
    ended = run_together(rt, backend, policy, job_ids, instances=2)
    assert all(isinstance(e, JobSummary) for e in ended.values()), ended
    assert [job_detail(rt.sessions, j)["state"] for j in job_ids] == [JobState.SUCCEEDED] * 2
    assert backend.peak["fleet"] <= 3 and backend.peak["out:a"] <= 2
    assert all(backend.peak[f"in:{n}"] <= 1 for n in "bcd")
    assert backend.peak["out:a"] == 2, "the test never had two copies out of a at once: it proved little"
    assert set(backend.bwlimits) == {budget / 2}  # every copy got its share of a's budget


def test_racing_claims_on_one_ready_move_have_one_winner(store_url: str, tmp_path: Path) -> None:
    rt = runtime(tmp_path, store_url, count=4, speedup=400.0)
    rounds, racers = 30, 4
    move = plan_evacuate(rt.backend.discover(), ["a"], Policy()).moves[0]
    one = Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:race", moves=[move])
    sessions = [open_database(rt.config.database_url) for _ in range(racers)]
    won: list[list[str]] = []
    for _ in range(rounds):
        job_id = create_job(rt.sessions, one, approved=True)
        meeting, winners = threading.Barrier(racers), []

        def race(i: int, job_id: int = job_id, meeting: threading.Barrier = meeting,
                 winners: list[str] = winners) -> None:
            meeting.wait(WAIT_S)
            offer = claim_ready_moves(sessions[i], job_id, f"r{i}", 60.0, busy=set(), admit=lambda m, c: True)
            winners.extend(f"r{i}" for _ in offer.claims)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S)
        won.append(winners)
        with rt.sessions.begin() as session:  # free the container for the next round's job
            release_locks(session, job_id)
    assert [len(w) for w in won] == [1] * rounds, won


def test_a_dead_instances_slot_comes_back_with_its_move_lease_and_its_saga_does_not_act(
        store_url: str, tmp_path: Path) -> None:
    rt = runtime(tmp_path, store_url, count=4, speedup=400.0)
    policy = Policy(max_parallel=1)
    plan = plan_evacuate(rt.backend.discover(), ["a"], policy)
    job_id = create_job(rt.sessions, plan, approved=True)
    slots = FleetSlots(rt.sessions, policy)
    dead = claim_ready_moves(rt.sessions, job_id, "dead", 60.0, busy=set(), admit=lambda m, c: True, room=1)
    (first, first_claim), = dead.claims
    with slots.hold(first, first_claim):
        assert [s.move_id for s in slots_in_use(rt.sessions)] == [first.id]
        other = claim_ready_moves(rt.sessions, job_id, "alive", 60.0, busy=set(), admit=lambda m, c: True, room=1)
        (second, second_claim), = other.claims
        with pytest.raises(TimeoutError):  # the fleet's one slot is taken
            with slots.hold(second, second_claim, cancelled=lambda: True):
                pass
        with rt.sessions.begin() as session:  # the holder dies: its lease runs out
            session.execute(update(MoveRow).where(MoveRow.id == first.id).values(lease_until=utcnow()))
        with slots.hold(second, second_claim) as share:
            assert share is None and [s.move_id for s in slots_in_use(rt.sessions)] == [second.id]
    taken = claim_ready_moves(rt.sessions, job_id, "alive", 60.0, busy={second.id}, admit=lambda m, c: True, room=1)
    assert [m.id for m, _ in taken.claims] == [first.id] and taken.claims[0][1].token == first_claim.token + 1
    stale = MoveSaga(rt.sessions, rt.backend, rt.config.engine, job_id, first.id, owner="dead", policy=policy,
                     move_claim=first_claim)
    with pytest.raises(MoveLost, match="stopping without acting"):
        stale.run()
    assert rt.backend.discover().container(first.ct).node == "a"  # the stale saga did nothing
    assert job_detail(rt.sessions, job_id)["journal"] == []
