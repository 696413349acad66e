"""Fencing: an instance that stalled past its lease, and whose job another instance took over,
does not act once it wakes. Its claim's token is stale, so the write that would record its next
step is refused (LeaseLost) and it stops; the journal of backend calls shows no step of its after
the takeover.

The stall is made in-process, on a real sim backend: instance A's backend stops right after a
step has run (as if the process froze there), and A's engine loop stops with it (its lease is not
renewed). Instance B, with its own store connection, claims the job once A's lease has run out,
finishes it, and only then is A let go."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.base import STEPS, Backend, MoveSpec, Step, StepContext
from fleet.plan import Plan
from service.engine import Engine, JobSummary
from service.jobs import JobConflict, LeaseLost, create_job, get_job, job_detail
from service.lifecycle import JobState, MoveState
from service.runtime import Runtime
from service.store import open_database
from tests.conftest import sim_config
from tests.integration.sim.test_api import hand_plan

WAIT_S = 60.0
LEASE_S = 1.0


class FreezingBackend:
    """A real backend whose steps are logged as (instance, step, ct) in call order; after
    ``freeze_after`` has run, the calling thread freezes until ``thaw`` is set."""

    def __init__(self, inner: Backend, instance: str, calls: list[tuple[str, str, str]],
                 freeze_after: Step | None = None) -> None:
        self.inner, self.instance, self.calls, self.freeze_after = inner, instance, calls, freeze_after
        self.frozen, self.thaw = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def step(self, step: Step, spec: MoveSpec, ctx: StepContext) -> Any:
        self.calls.append((self.instance, step.value, spec.ct))
        result = getattr(self.inner, step.value)(spec, ctx)
        if step == self.freeze_after and not self.frozen.is_set():
            self.frozen.set()
            self.thaw.wait(WAIT_S)
        return result

    def stalled(self, _job_id: int) -> bool:
        """The engine's hold: while frozen, the engine loop (and its lease renewal) stands still."""
        if self.frozen.is_set():
            self.thaw.wait(WAIT_S)
        return False


def _step_method(step: Step) -> Callable[..., Any]:
    return lambda self, spec, ctx: self.step(step, spec, ctx)


for _step in STEPS:
    setattr(FreezingBackend, _step.value, _step_method(_step))


def engine(rt: Runtime, backend: Any, owner: str, hold: Callable[[int], bool] | None = None,
           lease_s: float = LEASE_S) -> Engine:
    """An instance: its own store connection, the shared sim world."""
    settings = rt.config.engine.model_copy(update={"lease_s": lease_s})
    return Engine(open_database(rt.config.database_url), backend, rt.policy(), settings, owner=owner,
                  hold=hold)


def take_over(instance: Engine, job_id: int) -> JobSummary:
    """Claim the job as soon as the stalled owner's lease has run out, and run it."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return instance.run_job(job_id)
        except LeaseLost:
            raise
        except JobConflict:
            assert time.monotonic() < deadline, "the stalled owner's lease never ran out"
            time.sleep(0.1)


@pytest.fixture(params=["sqlite", "postgresql"])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Runtime:
    config = sim_config(tmp_path, speedup=2000.0)
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        config = config.model_copy(update={"ferry": config.ferry.model_copy(update={"database": url})})
    return Runtime(config)


def test_an_instance_that_lost_its_lease_does_not_act_after_the_takeover(rt: Runtime) -> None:
    job_id = create_job(rt.sessions, Plan.model_validate(hand_plan([("101", "b", "live", 0)])), approved=True)
    calls: list[tuple[str, str, str]] = []
    stale = FreezingBackend(rt.backend, "A", calls, freeze_after=Step.PRESYNC)
    a = engine(rt, stale, "instance-a", hold=stale.stalled)
    ended: dict[str, BaseException | JobSummary] = {}

    def run_a() -> None:
        try:
            ended["a"] = a.run_job(job_id)
        except BaseException as exc:  # noqa: BLE001 - what A ended with is the test's subject
            ended["a"] = exc

    thread = threading.Thread(target=run_a)
    thread.start()
    try:
        assert stale.frozen.wait(WAIT_S), "instance A never reached its presync"
        # B's lease is long: only A's must run out, and on a loaded machine a 1 s lease of the
        # healthy instance could lapse between two heartbeats too.
        b = engine(rt, FreezingBackend(rt.backend, "B", calls), "instance-b", lease_s=WAIT_S)
        summary = take_over(b, job_id)
        takeover = next(i for i, call in enumerate(calls) if call[0] == "B")
    finally:
        stale.thaw.set()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert summary.state == JobState.SUCCEEDED and summary.counts == {MoveState.SUCCEEDED: 1}
    assert isinstance(ended["a"], LeaseLost), ended["a"]
    assert "\n" not in str(ended["a"]) and "stopping without acting" in str(ended["a"])
    assert [call for call in calls[takeover:] if call[0] == "A"] == []  # A acted no more
    assert ("A", Step.PRESYNC, "101") in calls[:takeover]  # A did act before: the freeze was real
    assert a.claim is not None and b.claim is not None and b.claim.token > a.claim.token
    with rt.sessions() as session:
        job = get_job(session, job_id)
        assert (job.state, job.owner) == (JobState.SUCCEEDED, "instance-b")
    moves = job_detail(rt.sessions, job_id)["moves"]
    assert [(m["state"], m["step"], m["phase"]) for m in moves] == [(MoveState.SUCCEEDED, "cleanup", "done")]
    assert rt.backend.discover().container("101").node == "b"
