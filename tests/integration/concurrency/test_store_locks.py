"""Opening a SQLite store a second time in one process keeps the first connections' locks.

Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's too.
When ferry opened an existing store with a plain open()/close() (to make a new file owner-only),
a second Runtime on the same store in one process (an API instance beside a worker, as in
`ferry serve` and the tests) silently dropped the first one's locks. Another process's last
connection then took the exclusive lock, checkpointed and deleted the WAL under the first
instance, which went on reading a stale snapshot: a token revoked by `ferry user revoke` was still
accepted by the instance that had served it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from sqlalchemy import text

from service.store import open_database

WRITE = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("UPDATE probe SET value = ? WHERE id = 1", (sys.argv[2],))
db.commit()
db.close()
"""


def write_from_another_process(database: Path, value: str) -> None:
    subprocess.run([sys.executable, "-c", WRITE, str(database), value], check=True, timeout=60)


def test_a_second_open_in_this_process_leaves_the_first_ones_view_current(tmp_path: Path) -> None:
    database = tmp_path / "ferry.db"
    first = open_database(f"sqlite:///{database}")
    with first() as session:
        session.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY, value TEXT)"))
        session.execute(text("INSERT INTO probe VALUES (1, 'start')"))
        session.commit()
    open_database(f"sqlite:///{database}")  # another Runtime on the same store, same process

    write_from_another_process(database, "one")
    # The other process's last close must not have taken the WAL away from this one.
    assert (tmp_path / "ferry.db-wal").exists(), "the WAL was deleted under this process's connections"
    write_from_another_process(database, "two")

    with first() as session:
        assert session.scalar(text("SELECT value FROM probe WHERE id = 1")) == "two"
    with closing(sqlite3.connect(database)) as fresh:  # and what this process wrote is on disk for everyone
        assert fresh.execute("SELECT value FROM probe").fetchall() == [("two",)]


def test_a_new_store_file_is_owner_only(tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    open_database(f"sqlite:///{database}")
    assert database.stat().st_mode & 0o777 == 0o600
