"""Every backend keeps the invariants of adapters/base.py when the real engine drives it.

Each test runs on the simulated fleet, the Proxmox API double (HTTPS) and the OpenVZ lab (real
sshd, rsync), through ``service.saga.MoveSaga`` with a job store in a temporary directory. The
world is watched from outside ferry at every step boundary and, while steps run, by a thread
(invariants.py); each test asserts that no invariant was ever broken, besides its own outcome.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from adapters.base import MoveSpec
from tests.integration.conformance.harness import MoveOrder, MoveRun, SagaStore
from tests.integration.conformance.invariants import InvariantMonitor, only_copy
from tests.integration.conformance.rigs import STEPS_TO_VERIFY, Rig

CRASH_STEPS = ("preflight", "prepare", "presync", "cutover", "verify", "cleanup")


def _monitor(rig: Rig, order: MoveOrder) -> InvariantMonitor:
    return InvariantMonitor(rig.world, order, rig.watch_interval_s)


def _assert_moved(rig: Rig, order: MoveOrder) -> None:
    copy = only_copy(rig.world, order)
    assert copy is not None and copy.node == order.target, rig.world.copies(order)


def _assert_rolled_back(rig: Rig, order: MoveOrder, run: MoveRun) -> None:
    assert run.state == "rolled_back", run.message
    copies = rig.world.copies(order)
    assert [(c.node, c.running) for c in copies] == [(order.source, True)], copies


def _repeated(rig: Rig, run: MoveRun) -> dict[str, int]:
    """Destructive actions the journal shows more than once."""
    counts = Counter(key for entry in run.journal if (key := rig.destructive(entry)))
    assert counts, "the move changed nothing?"
    return {key: n for key, n in counts.items() if n > 1}


def test_move_keeps_every_invariant(rig: Rig, store: SagaStore) -> None:
    order = rig.order()
    with _monitor(rig, order) as monitor:
        run = store.run(rig.backend, order, monitor.hooks())
    assert run.state == "succeeded", run.message
    assert monitor.violations == []
    assert monitor.checks >= 12  # before and after each of the six steps, at least
    _assert_moved(rig, order)
    assert not rig.world.source_data(order) or rig.name == "proxmox"  # retired by cleanup
    assert _repeated(rig, run) == {}


@pytest.mark.parametrize("step", STEPS_TO_VERIFY)
def test_failure_before_verify_rolls_back(rig: Rig, store: SagaStore, step: str) -> None:
    order = rig.order()

    def fail_here(name: str, spec: MoveSpec) -> None:
        if name == step:
            rig.arm(step, order)

    try:
        with _monitor(rig, order) as monitor:
            run = store.run(rig.backend, order, monitor.hooks(before=fail_here))
    finally:
        rig.heal(order)
    assert run.message.startswith(f"{step} failed"), run.message
    _assert_rolled_back(rig, order, run)
    assert monitor.violations == []


def test_cleanup_failure_leaves_the_move_succeeded_and_cleanup_deferred(rig: Rig, store: SagaStore) -> None:
    order = rig.order()

    def fail_cleanup(name: str, spec: MoveSpec) -> None:
        if name == "cleanup":
            rig.arm("cleanup", order)

    with _monitor(rig, order) as monitor:
        run = store.run(rig.backend, order, monitor.hooks(before=fail_cleanup))
        assert (run.state, run.phase) == ("succeeded", "pending"), run.message
        assert run.cleanup_pending
        assert rig.world.source_data(order) or rig.name == "proxmox"  # nothing retired yet
        rig.heal(order)
        again = store.retry_cleanup(rig.backend, run)
    assert again.outcome is not None and again.outcome.message == "cleanup done", again.message
    assert again.phase == "done"
    assert monitor.violations == []
    _assert_moved(rig, order)


def test_every_step_called_twice_repeats_nothing_destructive(rig: Rig, store: SagaStore) -> None:
    order = rig.order()
    with _monitor(rig, order) as monitor:
        hooks = monitor.hooks(repeat=True)
        run = store.run(rig.backend, order, hooks)
    assert run.state == "succeeded", run.message
    assert hooks.calls.count("cutover") == 2
    assert monitor.violations == []
    _assert_moved(rig, order)
    assert _repeated(rig, run) == {}


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_resume_after_a_crash_mid_step_finishes_the_move(rig: Rig, store: SagaStore, step: str) -> None:
    if step not in rig.crash_steps:
        pytest.skip(f"{rig.name}: crashes are tried after {', '.join(rig.crash_steps)} (run time)")
    order = rig.order()
    with _monitor(rig, order) as monitor:
        crashed = store.run(rig.backend, order, monitor.hooks(crash_after=step))
        assert (crashed.state, crashed.step, crashed.phase) == ("running", step, "started")
        run = store.resume(rig.restarted(), crashed.job_id, crashed.move_id, monitor.hooks())
    assert run.state == "succeeded", run.message
    assert any(text.startswith(f"resuming: outcome of {step} unknown") for text in run.events)
    assert monitor.violations == []
    _assert_moved(rig, order)
    assert _repeated(rig, run) == {}


@pytest.mark.parametrize("method", ["restart", "dump"])
@pytest.mark.parametrize("step", CRASH_STEPS)
def test_a_stopped_container_arrives_stopped_through_a_crash(rig: Rig, store: SagaStore, step: str,
                                                            method: str) -> None:
    """A customer's stopped container is moved stopped: not started on its destination, not
    started by a rollback, even when ferry restarted mid-move and remembers nothing but its store
    (whether the source ran must outlive the process that saw it)."""
    if step not in rig.crash_steps:
        pytest.skip(f"{rig.name}: crashes are tried after {', '.join(rig.crash_steps)} (run time)")
    if method == "dump" and rig.name == "openvz-lab":
        pytest.skip("openvz-lab: one method is enough for the lab's marker (run time)")
    order = dataclasses.replace(rig.order(), method=method)
    rig.stop(order)
    with _monitor(rig, order) as monitor:
        crashed = store.run(rig.backend, order, monitor.hooks(crash_after=step))
        run = store.resume(rig.restarted(), crashed.job_id, crashed.move_id, monitor.hooks())
    assert run.state == "succeeded", run.message
    assert monitor.violations == []
    copies = rig.world.copies(order)
    assert [c for c in copies if c.running] == [], copies
    assert order.target in {c.node for c in copies}, copies


def test_rollback_called_twice_leaves_the_source_running(rig: Rig, store: SagaStore) -> None:
    """A cutover that fails, and every call (rollback too) made twice: the second rollback finds
    the work done and repeats nothing that changes the world."""
    order = rig.order()

    def fail_cutover(name: str, spec: MoveSpec) -> None:
        if name == "cutover":
            rig.arm("cutover", order)

    try:
        with _monitor(rig, order) as monitor:
            hooks = monitor.hooks(before=fail_cutover, repeat=True)
            run = store.run(rig.backend, order, hooks)
    finally:
        rig.heal(order)
    assert hooks.calls.count("rollback") == 2
    _assert_rolled_back(rig, order, run)
    assert monitor.violations == []
    assert _repeated(rig, run) == {}


def test_the_monitor_sees_two_running_copies(tmp_path) -> None:
    """The watch itself can fail: a destination started behind ferry's back is reported."""
    from tests.integration.conformance.rigs import SimRig

    rig = SimRig(tmp_path)
    order = rig.order()
    monitor = _monitor(rig, order)
    monitor.look("before")
    assert monitor.violations == []
    with rig.backend.world.transaction() as world:
        world["copies"][order.ct][order.target] = {"status": "running", "bytes": 0, "checksum": None}
    monitor.look("after")
    assert any("2 running copies" in v for v in monitor.violations)
    assert any("held by 2 running containers" in v for v in monitor.violations)
    with rig.backend.world.transaction() as world:
        del world["copies"][order.ct][order.source]
    monitor.look("later")
    assert any("source data of" in v for v in monitor.violations)
