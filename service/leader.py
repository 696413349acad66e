"""Leadership among ferry instances that share one store.

Several ``ferry serve`` instances may share a PostgreSQL store; every one of them runs jobs (a
job's lease makes sure only one runs a given job), but only one — the leader — runs the periodic
planning (the nightly rebalance), so that a fleet gets one rebalance a night, not one per
instance. The leader is whoever holds a PostgreSQL session-level advisory lock: it is released by
PostgreSQL itself when the holder's connection ends, so a dead leader is replaced at the next
try. With SQLite there is one instance per store, and it always leads.
"""

from __future__ import annotations

import threading

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

#: The advisory lock's key: "ferryldr" as a signed 64-bit integer.
LEADER_KEY = int.from_bytes(b"ferryldr", "big", signed=True)


class Leadership:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def try_lead(self) -> bool:
        """True if this instance leads now (taking the lead if nobody holds it)."""
        if not self.shared:
            return True
        with self._lock:
            try:
                if self._conn is not None:
                    self._conn.execute(text("SELECT 1"))  # still ours: the session holds the lock
                    return True
                conn = self.engine.connect()
                if conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_KEY}).scalar():
                    self._conn = conn
                    return True
                conn.invalidate()
                return False
            except SQLAlchemyError:  # the connection died, and the lock with it: try again next time
                self._drop()
                return False

    def release(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LEADER_KEY})
                except SQLAlchemyError:
                    pass
                self._drop()

    def _drop(self) -> None:
        """Close the session for good (invalidate: a pooled session would keep holding the lock)."""
        if self._conn is not None:
            try:
                self._conn.invalidate()
            except SQLAlchemyError:
                pass
            self._conn = None
