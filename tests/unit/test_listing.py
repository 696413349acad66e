"""``ferry jobs`` reads a SQLite store without SQLAlchemy (service/operations/listing.py): its
columns are the ORM's, and its answer is service.jobs.list_jobs's, row for row, on the same store;
a store it cannot read as is (missing, not at the newest schema, not SQLite) goes to the ORM."""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
from pathlib import Path

from sqlalchemy import update

from fleet.plan import Goal, Move, Plan
from service import jobs
from service.lifecycle import MoveState
from service.operations import listing
from service.store import JobRow, MoveRow, open_database, utcnow


def plan(source: str, *cts: str) -> Plan:
    return Plan(goal=Goal(kind="evacuate", nodes=[source]), inventory_digest="sha256:test",
                moves=[Move(ct=ct, to="z", method="live", **{"from": source}) for ct in cts])


def test_the_columns_read_are_the_orm_tables_columns() -> None:
    assert set(listing.JOB_COLUMNS) <= set(JobRow.__table__.columns.keys())
    assert set(listing.MOVE_COLUMNS) <= set(MoveRow.__table__.columns.keys())
    assert (JobRow.__tablename__, MoveRow.__tablename__) == ("jobs", "moves")


def test_the_listing_is_the_orms_row_for_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ferry.db'}"
    sessions = open_database(url)
    first = jobs.create_job(sessions, plan("a", "101", "102", "103"), approved=True)
    jobs.create_job(sessions, plan("b", "104"), approved=False)
    third = jobs.create_job(sessions, plan("c", "105", "106"), approved=True)
    dead = f"{socket.gethostname()}:{2**22 + 1}"  # a pid beyond pid_max: a process that is gone
    with sessions.begin() as session:
        session.execute(update(MoveRow).where(MoveRow.job_id == first, MoveRow.ct != "103")
                        .values(state=MoveState.SUCCEEDED))
        session.execute(update(JobRow).where(JobRow.id == first).values(
            owner=f"elsewhere:{os.getpid()}", lease_until=utcnow() + dt.timedelta(minutes=5), message="running"))
        session.execute(update(JobRow).where(JobRow.id == third).values(
            owner=dead, lease_until=utcnow() + dt.timedelta(minutes=5)))
    expected = jobs.list_jobs(sessions, limit=50)
    assert listing.list_jobs_from_sqlite(url, 50) == expected
    assert [(j["id"], j["moves"], j["done"], j["run_by"]) for j in expected] == [
        (third, 2, 0, None), (2, 1, 0, None), (first, 3, 2, f"elsewhere:{os.getpid()}")]
    assert listing.list_jobs_from_sqlite(url, 1) == jobs.list_jobs(sessions, limit=1)


def test_a_store_it_cannot_read_as_is_goes_to_the_orm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ferry.db'}"
    assert listing.list_jobs_from_sqlite(url, 50) is None  # no store yet: the ORM creates it
    open_database(url)
    assert listing.list_jobs_from_sqlite(url, 50) == []
    with sqlite3.connect(tmp_path / "ferry.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    assert listing.list_jobs_from_sqlite(url, 50) is None  # older schema: the ORM migrates it
    assert listing.list_jobs_from_sqlite("postgresql+psycopg://ferry@db/ferry", 50) is None
    assert listing.list_jobs_from_sqlite("sqlite:///:memory:", 50) is None
