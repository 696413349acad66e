"""``ferry jobs`` and ``ferry inventory`` from a SQLite store through the standard library's
sqlite3, without SQLAlchemy.

    ferry jobs --> list_jobs_from_sqlite(database_url, limit)
    ferry inventory --> inventory_from_sqlite(runtime): discover; no node state stored; remembered
                        containers unchanged (else service.recovery_seen.remember writes them)
                      |  None: not SQLite, no store yet, its schema not at the newest revision,
                      |  or a node state stored (settling and applying states is the ORM's work)
                      v
                   service.operations.list_jobs / current_inventory (the ORM, which creates or
                   migrates the store)

SQLAlchemy's import alone costs these commands more than all their other work. The answers are
the ones the ORM path gives; the tables and columns read here are the ORM's (service.store,
service.nodes, service.recovery_seen), and tests/unit/test_listing.py checks both against the ORM
on the same store, so the schema keeps one source of truth: the ORM and its migrations.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from service.lifecycle import MoveState
from service.recovery_facts import facts_to_remember
from service.store_basics import head_revision, lease_holder

if TYPE_CHECKING:
    from fleet.model import Inventory
    from service.runtime import Runtime

#: What the listing reads, by table (the test checks every name against the ORM's tables).
JOB_COLUMNS = ("id", "kind", "nodes", "state", "owner", "lease_until", "created_at", "message")
MOVE_COLUMNS = ("job_id", "state")
JOBS_SQL = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs ORDER BY id DESC LIMIT ?"
MOVE_COUNTS_SQL = "SELECT job_id, count(*), sum(state = ?) FROM moves WHERE job_id >= ? GROUP BY job_id"
SEEN_COLUMNS = ("node", "ct", "facts")
NODE_STATES_SQL = "SELECT count(*) FROM node_states"
SEEN_SQL = f"SELECT {', '.join(SEEN_COLUMNS)} FROM seen_containers"


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite store's URL (``sqlite:///relative`` or ``sqlite:////absolute``)."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix) or "?" in database_url:
        return None
    name = database_url[len(prefix):]
    return Path(name) if name and name != ":memory:" else None


def _stamp(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@contextlib.contextmanager
def _reading(database_url: str) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection in one snapshot to the store at the newest schema, else None."""
    path = sqlite_path(database_url)
    if path is None or not path.is_file():
        yield None
        return
    with contextlib.closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)) as conn:
        try:
            conn.execute("BEGIN")
            at_head = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")] == [head_revision()]
        except sqlite3.Error:  # no version table: a store being created
            at_head = False
        yield conn if at_head else None
        conn.rollback()


def list_jobs_from_sqlite(database_url: str, limit: int) -> list[dict[str, Any]] | None:
    """Newest first, as service.jobs.list_jobs; None when this store must go through the ORM."""
    try:
        with _reading(database_url) as conn:
            if conn is None:
                return None
            jobs = conn.execute(JOBS_SQL, (limit,)).fetchall()
            oldest = min((row[0] for row in jobs), default=0)
            counts = {job_id: (moves, done or 0) for job_id, moves, done
                      in conn.execute(MOVE_COUNTS_SQL, (MoveState.SUCCEEDED.value, oldest))}
    except sqlite3.Error:  # locked past the timeout, …: the ORM path says what is wrong
        return None
    out = []
    for job_id, kind, nodes, state, owner, lease_until, created_at, message in jobs:
        moves, done = counts.get(job_id, (0, 0))
        out.append({"id": job_id, "kind": kind, "nodes": json.loads(nodes), "state": state,
                    "run_by": lease_holder(SimpleNamespace(owner=owner, lease_until=_stamp(lease_until))),
                    "moves": moves, "done": done, "created_at": _stamp(created_at).isoformat() + "Z",
                    "message": message})
    return out


def inventory_from_sqlite(rt: Runtime) -> Inventory | None:
    """The live fleet as service.operations.current_inventory gives it, when no node has a state
    stored (every node active: nothing to settle or apply); the containers it remembers are
    written through the ORM only when they changed. None: this store must go through the ORM."""
    try:
        with _reading(rt.config.database_url) as conn:
            if conn is None or conn.execute(NODE_STATES_SQL).fetchone()[0]:
                return None
            seen = {(node, ct): json.loads(facts) for node, ct, facts in conn.execute(SEEN_SQL)}
    except sqlite3.Error:
        return None
    inv = rt.backend.discover()
    online, now = facts_to_remember(inv)
    if {key: facts for key, facts in seen.items() if key[0] in set(online)} != now:
        from service.recovery_seen import remember

        remember(rt.sessions, inv)
    return inv
