"""Clocks for the engine and the simulator: wall time, or a virtual clock that nothing sleeps on.

The engine and the simulated backend ask a clock for the time and wait through it. Everywhere but
the engine benchmark that is :data:`WALL_CLOCK` (real time; the simulator scales it by its
``speedup``). :class:`VirtualClock` is a discrete-event clock for one process: simulated time stands
still while any participating thread works, and when every one of them waits it jumps to the
earliest wake-up a simulated action asked for (a copy slice, a container stop). A benchmark run on
it measures the scheduling, not the machine's load: the same run gives the same makespan on a
quiet machine and on a busy one.

Participants are the thread that created the clock (it runs the engine) and every task started
through :meth:`VirtualClock.submit` until it ends. They run one at a time, in a fixed order
(a participant holds the turn except while it waits), so a run is repeatable: threads woken at the same simulated instant would
otherwise all reach the store at the same real instant and measure SQLite's busy-waiting on each
other rather than the engine's work. Waits are of two kinds:

- *timed* (:meth:`sleep`): a simulated action that takes that long; these set the next instant;
- *polls* (:meth:`wait_futures`, :meth:`VirtualCondition.wait`): "wake me when this happens, or
  look again after a while". A poll's timeout is a re-check interval, not work: a poll wakes when
  what it waits for happens (a future done, a condition notified), and times out only when nothing
  else is pending (time then jumps to its timeout). In one process every event the engine waits
  for is notified, so its looks cost no simulated time and none are wasted.

A participant that loops without ever waiting stops simulated time (as it would hold a CPU
forever in real time): wait on what is still pending, never on a future already done.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Any, Protocol

#: Real seconds a virtual wait blocks before it re-checks (a safety net: wake-ups are notified).
_RECHECK_REAL_S = 0.5


class Clock(Protocol):
    """What the engine and the simulator need of time."""

    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    def wait_futures(self, futures: Iterable[Future[Any]], timeout: float) -> tuple[set[Future[Any]], set[Future[Any]]]: ...
    def condition(self) -> Any: ...
    def submit(self, pool: Executor, fn: Callable[[], Any]) -> Future[Any]: ...


class WallClock:
    """Real time (the default everywhere)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait_futures(self, futures: Iterable[Future[Any]], timeout: float) -> tuple[set[Future[Any]], set[Future[Any]]]:
        done, pending = wait(list(futures), timeout=timeout, return_when=FIRST_COMPLETED)
        return set(done), set(pending)

    def condition(self) -> threading.Condition:
        return threading.Condition()

    def submit(self, pool: Executor, fn: Callable[[], Any]) -> Future[Any]:
        return pool.submit(fn)


WALL_CLOCK = WallClock()


@dataclass(eq=False)
class _Waiter:
    deadline: float
    ready: Callable[[], bool]
    timed: bool  # a simulated action's duration (sets the next instant), not a poll
    order: int  # registration order: who runs first among those due at the same instant
    expired: bool = False  # a poll whose timeout the clock moved to (nothing timed was pending)

    def due(self, now: float) -> bool:
        return self.ready() or self.expired or (self.timed and now >= self.deadline)


class VirtualClock:
    """Simulated seconds that pass only while every participant waits (module docstring).

    One participant holds the *turn* at a time; when it waits, the turn goes to the earliest
    registered waiter that is due, and when none is, time jumps. A task's turn ends when its
    future is done (not when its function returns), so the engine waiting on that future is due
    before anybody can make time pass."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._cond = threading.Condition()
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()
        self._holding = True  # the creating thread, which runs the engine, holds the turn
        self.jumps = 0  # instants the clock moved to (a figure for benchmarks)

    def monotonic(self) -> float:
        return self._now

    now = monotonic

    def sleep(self, seconds: float) -> None:
        self._wait(lambda: False, seconds, timed=True)

    def wait_futures(self, futures: Iterable[Future[Any]], timeout: float) -> tuple[set[Future[Any]], set[Future[Any]]]:
        futures = list(futures)
        self._wait(lambda: any(f.done() for f in futures), timeout, timed=False)
        done = {f for f in futures if f.done()}
        return done, set(futures) - done

    def condition(self) -> VirtualCondition:
        return VirtualCondition(self)

    def submit(self, pool: Executor, fn: Callable[[], Any]) -> Future[Any]:
        """Start ``fn`` as a participant: it runs in its turn, and its turn lasts until it ends."""
        with self._cond:
            ticket = _Waiter(self._now, lambda: True, False, next(self._order))
            self._waiters.append(ticket)

        def participate() -> Any:
            with self._cond:
                self._take_turn(ticket)
            return fn()

        future = pool.submit(participate)
        future.add_done_callback(self._ended)
        return future

    def _ended(self, _future: Future[Any]) -> None:
        with self._cond:
            self._holding = False
            self._cond.notify_all()

    def _wait(self, ready: Callable[[], bool], seconds: float, *, timed: bool) -> None:
        with self._cond:
            me = _Waiter(self._now + max(0.0, seconds), ready, timed, next(self._order))
            self._waiters.append(me)
            self._holding = False
            self._take_turn(me)

    def _take_turn(self, me: _Waiter) -> None:
        """Block (holding ``_cond``) until ``me`` is the first due waiter, then hold the turn."""
        try:
            while True:
                if not self._holding:
                    due = [w for w in self._waiters if w.due(self._now)]
                    if not due:
                        self._advance()
                        continue
                    if min(due, key=lambda w: w.order) is me:
                        self._holding = True
                        return
                    self._cond.notify_all()
                self._cond.wait(timeout=_RECHECK_REAL_S)
        finally:
            self._waiters.remove(me)

    def _advance(self) -> None:
        """Nobody runs and nobody is due: jump to the earliest timed wake-up, or when no timed wait
        is pending, to the earliest poll timeout (those polls expire), and wake everybody to look."""
        timed = [w.deadline for w in self._waiters if w.timed]
        if timed:
            self._now = max(self._now, min(timed))
        else:
            self._now = max(self._now, min(w.deadline for w in self._waiters))
            for w in self._waiters:
                w.expired = w.deadline <= self._now
        self.jumps += 1
        self._cond.notify_all()


class VirtualCondition:
    """A ``threading.Condition`` look-alike whose waits are polls on a :class:`VirtualClock`."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._generation = 0

    def __enter__(self) -> VirtualCondition:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def wait(self, timeout: float | None = None) -> bool:
        seen = self._generation
        self._clock._wait(lambda: self._generation != seen, 3600.0 if timeout is None else timeout, timed=False)
        return self._generation != seen

    def notify_all(self) -> None:
        with self._clock._cond:
            self._generation += 1
            self._clock._cond.notify_all()

    notify = notify_all

