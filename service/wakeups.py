"""Wake-ups between ferry instances: a move ended, a slot came free, so waiting claimants look now.

    engine: a move of job J ended --notify(J)--> PostgreSQL NOTIFY ferry_moves   (after the commit)
    slots:  a transfer slot freed  --notify--> in the release's own transaction
    every instance: one LISTEN connection per running job (a thread, psycopg 3)
        --> generation += 1, waiters woken --> Engine looks for ready moves at once,
            FleetSlots looks for a free slot at once

Without it an instance learns of another's ended move only at its next look, while the instance
whose move ended claims again at once; so it took nearly every move. A wake-up is only a hint: a
waiter still looks at the store (level-triggered), and waits are bounded, so a lost notification
costs one poll interval, never a stall. On SQLite (one instance per store) only this process's
waiters are woken, and the bounded poll does the rest.
"""

from __future__ import annotations

import logging
import os
import threading

from sqlalchemy import event, text
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.orm import Session

from adapters.clock import WALL_CLOCK, Clock

log = logging.getLogger("ferry.engine")

CHANNEL = "ferry_moves"
#: How long the listener blocks for notifications before it checks whether it should stop.
_LISTEN_S = 0.5


class Wakeups:
    """This process's view of the store's wake-ups: a generation counter that rises on each one."""

    def __init__(self, bind: SqlEngine, *, listen: bool = True, clock: Clock = WALL_CLOCK) -> None:
        """``listen``: also hear the other instances' wake-ups (else only send them, and wake
        this process's waiters). Waits go through ``clock`` (the engine's: bench/engine.py runs
        on a virtual one)."""
        self.clock = clock
        self.shared = bind.dialect.name == "postgresql"
        self.generation = 0
        #: Prefix of this object's notifications, so that its listener skips them.
        self._sender = f"{os.getpid()}.{id(self)}:"
        self._changed = clock.condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.shared and listen:
            conninfo = bind.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._thread = threading.Thread(target=self._listen, args=(conninfo,), name="wakeups", daemon=True)
            self._thread.start()

    def _listen(self, conninfo: str) -> None:
        """LISTEN until stopped; reconnect after a lost connection (bounded by the stop flag)."""
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.wake()  # anything sent while not listening: look once
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=_LISTEN_S, stop_after=1):
                            if not note.payload.startswith(self._sender):  # its own: woken already
                                self.wake()
            except psycopg.Error as exc:
                log.warning("wake-ups: listening failed (%s); polling until it is back", exc)
                self._stop.wait(_LISTEN_S)

    def wake(self) -> None:
        with self._changed:
            self.generation += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the generation passes ``seen`` or ``timeout`` ends; the generation now."""
        deadline = self.clock.monotonic() + timeout
        with self._changed:
            while self.generation == seen and (left := deadline - self.clock.monotonic()) > 0:
                self._changed.wait(timeout=left)
            return self.generation

    def notify(self, session: Session, job_id: int | None = None) -> None:
        """Wake every instance's waiters once ``session``'s transaction commits (on SQLite only
        this process's: nobody else listens), so that they see what it wrote."""
        if self.shared:
            session.execute(text("SELECT pg_notify(:channel, :payload)"),
                            {"channel": CHANNEL, "payload": f"{self._sender}{job_id or ''}"})
        event.listen(session, "after_commit", lambda _session: self.wake(), once=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_LISTEN_S * 4)
        self.wake()
