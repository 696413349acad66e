"""The durable job store: jobs, their moves (one saga each), the journal, locks and link figures.

SQLAlchemy 2 over SQLite (WAL) by default; a PostgreSQL URL works as well. Everything the engine
needs to resume lives here, and nothing lives only in a process: a move's current step and whether
it started or finished, who holds it (``claimed_by`` / ``lease_until``, so a second instance can see
an abandoned move), and which containers are locked by which job.

Claims are atomic on both databases. On SQLite every transaction begins with ``BEGIN IMMEDIATE``
(pysqlite's own transaction handling is switched off, as SQLAlchemy documents), so a transaction
that reads a row and then writes it holds the write lock from its first read: two instances cannot
both see a job free and both take it. PostgreSQL runs claims as conditional ``UPDATE``s whose row
count is checked (service.jobs), and serialises job creation with an advisory lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from service.lifecycle import MoveState
from service.store_basics import MIGRATIONS as _MIGRATIONS
from service.store_basics import head_revision as _head_revision
from service.store_basics import utcnow


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    nodes: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), index=True)  # lifecycle.JobState
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    #: Fencing token: incremented by every claim, so a write by an instance whose claim was taken
    #: over (it stalled past its lease) names an old token and is refused.
    claim_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class MoveRow(Base):
    __tablename__ = "moves"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    ct: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    wave: Mapped[int] = mapped_column(Integer, default=0)
    after: Mapped[list[str]] = mapped_column(JSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=MoveState.PENDING, index=True)  # MoveState
    step: Mapped[str | None] = mapped_column(String(16), nullable=True)  # adapters.base.Step
    phase: Mapped[str | None] = mapped_column(String(16), nullable=True)  # lifecycle.Phase
    #: Tries of the move: its first, plus one per retried step, resumed step and fallback.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    predicted: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The instance whose saga drives the move, until ``lease_until`` (renewed at every step).
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    #: The job claim's fencing token under which ``claimed_by`` last drove the move.
    claim_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # world clock
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class JournalRow(Base):
    __tablename__ = "journal"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    ct: Mapped[str | None] = mapped_column(String(64), nullable=True)
    step: Mapped[str | None] = mapped_column(String(16), nullable=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255), default="")
    what: Mapped[Any] = mapped_column(JSON)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LockRow(Base):
    """A container locked by the job that moves it: a second plan touching it is refused."""

    __tablename__ = "ct_locks"
    ct: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))


class LinkRow(Base):
    """Observed throughput per (source, destination), exponentially weighted, for the cost model."""

    __tablename__ = "links"
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    target: Mapped[str] = mapped_column(String(64), primary_key=True)
    mb_s: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
    dbapi_conn.isolation_level = None  # pysqlite begins no transaction itself: _begin_immediate does


def _begin_immediate(connection: Any) -> None:
    """Every SQLite transaction takes the write lock at once (waiting up to busy_timeout for it),
    so a read followed by a write in one transaction is atomic against other instances."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


#: A pooled PostgreSQL connection idle this long is pinged before it is used (a connection a
#: firewall or the server dropped while it sat in the pool is replaced, not handed out). One used
#: a moment ago is not: a saga step writes several times a second, and a ping on every check-out
#: (``pool_pre_ping``) was a round trip to the server for each of those writes.
PING_IDLE_S = 2.0


def _note_idle(_dbapi_conn: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_when_idle(dialect: Any) -> Any:
    """A check-out listener that pings (as ``pool_pre_ping`` does) only a connection idle for
    PING_IDLE_S or more, or never used; one that fails is dropped and the pool takes another."""
    def listener(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < PING_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc
    return listener


def _create_owner_only(database: str) -> None:
    """Create a new SQLite file owner-only (SQLite gives -wal/-shm the database's mode).

    An existing file is never opened here: closing *any* descriptor of a file drops every POSIX
    lock this process holds on it, including the locks of SQLite connections already open on it
    (another Runtime in this process). Another process closing its last connection would then
    believe itself the last one, checkpoint and delete the WAL under those connections, and they
    would go on reading a stale snapshot (a revoked token still accepted) and writing into a
    deleted file."""
    try:
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    except FileExistsError:
        pass


def open_database(url: str) -> sessionmaker[Session]:
    """Connect, create the schema if missing, and return a session factory."""
    engine: SqlEngine
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate)
        if engine.url.database not in (None, "", ":memory:"):
            _create_owner_only(engine.url.database)
    else:
        engine = create_engine(url)
        event.listen(engine, "checkin", _note_idle)
        event.listen(engine, "checkout", _ping_when_idle(engine.dialect))
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)


def _at_head(engine: SqlEngine) -> bool:
    """Whether the store's schema is at the newest revision already. Checked without Alembic, whose
    import costs a short command (``ferry jobs``) more than everything else it does."""
    head = _head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as connection:
            stamped = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except DBAPIError:  # a new store: no version table yet
        return False
    return stamped == [head]


def migrate(engine: SqlEngine) -> None:
    """Bring the schema to the newest Alembic revision (a no-op when it is there already)."""
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(_MIGRATIONS))
    # Two ferry processes may open a new store at once (`ferry evacuate` and `ferry jobs`): the
    # migration runs under a lock, so the second one finds the schema made instead of racing.
    with _migration_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


_MIGRATION_KEY = int.from_bytes(b"ferrymig", "big", signed=True)


@contextlib.contextmanager
def _migration_lock(engine: SqlEngine) -> Iterator[None]:
    """An exclusive file lock beside a SQLite database (PostgreSQL uses an advisory lock)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    fd = os.open(f"{database}.migrate.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def lone_statement(sessions: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection for one statement that is a transaction of its own (a journal entry). On
    PostgreSQL it runs in autocommit: a lone statement is atomic by itself, and BEGIN and COMMIT
    would be two more round trips to the server. On SQLite it is the usual ``BEGIN IMMEDIATE``
    transaction (an autocommit connection would be handed back to the pool with pysqlite's own
    transaction handling, which the store switches off)."""
    engine: SqlEngine = sessions.kw["bind"]
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection
    else:
        with engine.begin() as connection:
            yield connection


def job_moves(session: Session, job_id: int) -> list[MoveRow]:
    return list(session.scalars(select(MoveRow).where(MoveRow.job_id == job_id).order_by(MoveRow.seq)))


def job_journal(session: Session, job_id: int) -> list[JournalRow]:
    return list(session.scalars(select(JournalRow).where(JournalRow.job_id == job_id).order_by(JournalRow.id)))


class SlotRow(Base):
    """A transfer slot held by a move that is copying (service.slots): per fleet, per node out and
    in, with the move's share of the nodes' bandwidth budgets. It is live only while the move's
    claim that took it is (same holder and fencing token, lease not run out), so the slots of an
    instance that died come back when its move leases do."""

    __tablename__ = "transfer_slots"
    move_id: Mapped[int] = mapped_column(ForeignKey("moves.id"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    claim_token: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(64), index=True)
    bw_mb_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    taken_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AddressRow(Base):
    """An address a job's plan hands to a container (planners/addresses.py). While the job is
    active no other plan may hand it out; afterwards the container itself holds it (the
    inventory shows it), or the move was undone and it is free again."""

    __tablename__ = "address_allocations"
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    ct: Mapped[str] = mapped_column(String(64))
    network: Mapped[str] = mapped_column(String(64))
