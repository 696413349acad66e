"""``ferry jobs`` from a SQLite store through the standard library's sqlite3, without SQLAlchemy.

    ferry jobs --> list_jobs_from_sqlite(database_url, limit)
                      |  None: not SQLite, no store yet, or its schema not at the newest revision
                      v
                   service.operations.list_jobs (the ORM, which creates or migrates the store)

SQLAlchemy's import alone costs the command more than all its other work. The answer is the one
service.jobs.list_jobs gives, row for row; the tables and columns read here are the ORM's
(service.store.JobRow, MoveRow), and tests/unit/test_listing.py checks both against the ORM on the
same store, so the schema keeps one source of truth: the ORM and its migrations.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from service.lifecycle import MoveState
from service.store_basics import head_revision, lease_holder

#: What the listing reads, by table (the test checks every name against the ORM's tables).
JOB_COLUMNS = ("id", "kind", "nodes", "state", "owner", "lease_until", "created_at", "message")
MOVE_COLUMNS = ("job_id", "state")
JOBS_SQL = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs ORDER BY id DESC LIMIT ?"
MOVE_COUNTS_SQL = "SELECT job_id, count(*), sum(state = ?) FROM moves WHERE job_id >= ? GROUP BY job_id"


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite store's URL (``sqlite:///relative`` or ``sqlite:////absolute``)."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix) or "?" in database_url:
        return None
    name = database_url[len(prefix):]
    return Path(name) if name and name != ":memory:" else None


def _stamp(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def list_jobs_from_sqlite(database_url: str, limit: int) -> list[dict[str, Any]] | None:
    """Newest first, as service.jobs.list_jobs; None when this store must go through the ORM."""
    path = sqlite_path(database_url)
    if path is None or not path.is_file():
        return None
    head = head_revision()
    try:
        with contextlib.closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)) as conn:
            conn.execute("BEGIN")  # one snapshot for both reads
            if [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")] != [head]:
                return None
            jobs = conn.execute(JOBS_SQL, (limit,)).fetchall()
            oldest = min((row[0] for row in jobs), default=0)
            counts = {job_id: (moves, done or 0) for job_id, moves, done
                      in conn.execute(MOVE_COUNTS_SQL, (MoveState.SUCCEEDED.value, oldest))}
            conn.rollback()
    except sqlite3.Error:  # no version table (a store being created), locked past the timeout…
        return None
    out = []
    for job_id, kind, nodes, state, owner, lease_until, created_at, message in jobs:
        moves, done = counts.get(job_id, (0, 0))
        out.append({"id": job_id, "kind": kind, "nodes": json.loads(nodes), "state": state,
                    "run_by": lease_holder(SimpleNamespace(owner=owner, lease_until=_stamp(lease_until))),
                    "moves": moves, "done": done, "created_at": _stamp(created_at).isoformat() + "Z",
                    "message": message})
    return out
