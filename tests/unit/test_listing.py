"""``ferry jobs`` and ``ferry inventory`` read a SQLite store without SQLAlchemy
(service/operations/listing.py): the columns are the ORM's, and the answers are the ORM path's on
the same store (service.jobs.list_jobs, service.operations.current_inventory, with what it
remembers); a store it cannot read as is (missing, not at the newest schema, not SQLite, a node
state to settle or apply) goes to the ORM."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import sqlite3
from pathlib import Path

from sqlalchemy import update

from fleet.plan import Goal, Move, Plan
from service import jobs
from service.config import Config, FerrySection
from service.lifecycle import MoveState
from service.nodes import NodeState, set_state
from service.operations import listing
from service.operations.planning import current_inventory
from service.recovery_seen import SeenContainerRow
from service.runtime import Runtime
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


def sim_runtime(state: Path) -> Runtime:
    fleet_file = Path(__file__).resolve().parents[1] / "doubles" / "fleets" / "small.yaml"
    return Runtime(Config(ferry=FerrySection(backend="sim", state_dir=str(state)), sim={"fleet_file": str(fleet_file)}))


def seen_rows(state: Path) -> list[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(state / "ferry.db")) as conn:
        return conn.execute("SELECT node, ct, seen_at FROM seen_containers ORDER BY node, ct").fetchall()


def test_the_inventory_is_the_orms_and_an_unchanged_fleet_writes_nothing(tmp_path: Path) -> None:
    assert set(listing.SEEN_COLUMNS) <= set(SeenContainerRow.__table__.columns.keys())
    assert {"node_states", "seen_containers"} <= set(SeenContainerRow.metadata.tables)
    state = tmp_path / "state"
    assert listing.inventory_from_sqlite(sim_runtime(state)) is None  # no store yet
    expected = current_inventory(sim_runtime(state))  # the ORM path creates the store and remembers
    remembered = seen_rows(state)
    assert len(remembered) == len(expected.containers) > 0
    assert listing.inventory_from_sqlite(sim_runtime(state)) == expected
    assert seen_rows(state) == remembered  # nothing written
    with contextlib.closing(sqlite3.connect(state / "ferry.db")) as conn, conn:
        conn.execute("DELETE FROM seen_containers WHERE ct = ?", (remembered[0][1],))
    assert listing.inventory_from_sqlite(sim_runtime(state)) == expected
    assert [row[:2] for row in seen_rows(state)] == [row[:2] for row in remembered]  # written again


def test_a_node_with_a_state_sends_the_inventory_to_the_orm(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path / "state")
    inv = current_inventory(rt)
    with rt.sessions.begin() as session:
        set_state(session, inv.nodes[0].name, NodeState.CORDONED)
    assert listing.inventory_from_sqlite(sim_runtime(tmp_path / "state")) is None
    assert current_inventory(rt).nodes[0].cordoned
