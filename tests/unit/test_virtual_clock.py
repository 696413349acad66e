"""The virtual clock (adapters/clock.py): simulated time passes only while every participant waits,
participants run one at a time in a fixed order, and a poll wakes on its event, not its timeout."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from adapters.clock import VirtualClock


def _wait_all(clock: VirtualClock, futures: list) -> None:
    """As the engine waits: on the futures not done yet (a done one would wake it at once)."""
    pending = set(futures)
    for _ in range(100):
        if not pending:
            return
        _, pending = clock.wait_futures(pending, 0.1)
    raise AssertionError("tasks still running after 100 wake-ups")


def test_sleeps_take_simulated_time_only_and_overlap():
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    def sleeper(name: str, seconds: float) -> None:
        clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        futures = [clock.submit(pool, lambda n=n, s=s: sleeper(n, s)) for n, s in (("a", 300.0), ("b", 100.0))]
        _wait_all(clock, futures)
    assert woke == [("b", 100.0), ("a", 300.0)]
    assert clock.monotonic() == 300.0  # the two sleeps overlapped
    assert time.monotonic() - started < 30  # nothing slept for real


def test_a_waiter_on_a_future_wakes_when_it_ends_not_at_its_timeout():
    clock = VirtualClock()
    with ThreadPoolExecutor(2) as pool:
        future = clock.submit(pool, lambda: clock.sleep(7.0))
        done, pending = clock.wait_futures([future], 1000.0)
    assert done == {future} and not pending
    assert clock.monotonic() == 7.0


def test_a_poll_times_out_only_when_nothing_else_is_pending():
    clock = VirtualClock()
    condition = clock.condition()
    assert condition.wait(timeout=0.15) is False  # alone: time jumps to the poll's timeout
    assert clock.monotonic() == 0.15


def test_a_notified_condition_wakes_its_waiter_at_the_instant_of_the_notify():
    clock = VirtualClock()
    condition = clock.condition()
    seen: list[float] = []

    def waiter() -> None:
        with condition:
            while not seen:
                condition.wait(timeout=0.15)  # the slot-wait pattern: look again after a while
        seen.append(clock.monotonic())

    def notifier() -> None:
        clock.sleep(42.0)
        seen.append(clock.monotonic())
        with condition:
            condition.notify_all()

    with ThreadPoolExecutor(2) as pool:
        futures = [clock.submit(pool, waiter), clock.submit(pool, notifier)]
        _wait_all(clock, futures)
    assert seen == [42.0, 42.0]


def test_the_same_work_gives_the_same_order_every_time():
    def run() -> list[str]:
        clock = VirtualClock()
        order: list[str] = []

        def task(name: str, seconds: float) -> None:
            clock.sleep(seconds)
            order.append(name)
            clock.sleep(seconds)
            order.append(name)

        with ThreadPoolExecutor(8) as pool:
            futures = [clock.submit(pool, lambda n=str(i), s=float(i % 3): task(n, s)) for i in range(8)]
            _wait_all(clock, futures)
        return order

    first = run()
    assert len(first) == 16
    assert all(run() == first for _ in range(3))
