"""Transfer slots: the concurrency limits apply to moves that are copying data.

A move's data phase (pre-sync through cutover) holds one slot on its source's outgoing side, one
on its target's incoming side and one of the fleet's. Moves outside that phase (pre-flight,
prepare, verify, cleanup) hold none, so the engine admits a few more moves than there are slots
and their checks overlap other moves' copies: links stay busy, and the limits still bound what
they exist for — bytes in flight per NIC.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fleet.policy import Policy

#: Moves admitted per slot: 2 lets one move prepare or verify while another copies.
ADMISSION_DEPTH = 2


class TransferSlots:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._out: Counter[str] = Counter()
        self._in: Counter[str] = Counter()
        self._total = 0
        self._cond = threading.Condition()

    def _free(self, source: str, target: str) -> bool:
        return (self._total < self.policy.max_parallel
                and self._out[source] < self.policy.max_outgoing_per_node
                and self._in[target] < self.policy.max_incoming_per_node)

    @contextmanager
    def hold(self, source: str, target: str, cancelled: Callable[[], bool] = lambda: False) -> Iterator[None]:
        """Wait (re-checking ``cancelled`` every 0.2 s) for a slot, hold it for the block."""
        with self._cond:
            while not self._free(source, target):
                if cancelled():
                    raise TimeoutError("cancelled while waiting for a transfer slot")
                self._cond.wait(timeout=0.2)
            self._out[source] += 1
            self._in[target] += 1
            self._total += 1
        try:
            yield
        finally:
            with self._cond:
                self._out[source] -= 1
                self._in[target] -= 1
                self._total -= 1
                self._cond.notify_all()
