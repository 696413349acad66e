"""The saga's store writes, on SQLite and PostgreSQL: one fenced statement per row write, the
row's journal entries and the move's link figure in the same transaction, and the saga's own
copy of the row (it reads it once) in step with what is stored; on PostgreSQL, pooled
connections pinged only when they sat idle.

A takeover is made for real: the move's lease is let run out in the store and a second owner
claims it, while the first saga is inside a step and still believes its claim good (its lease
has not run out on its own clock), so only the store's conditional write can stop it."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.exc import OperationalError

from adapters.base import Backend, MoveSpec, StepContext
from fleet.plan import Plan
from service import store
from service.jobs import create_job, job_detail, learn_link
from service.lifecycle import MoveState, Phase
from service.move_claims import MoveLost, claim_ready_moves
from service.runtime import Runtime
from service.saga import MoveSaga
from service.store import LinkRow, LockRow, MoveRow, open_database, utcnow
from tests.conftest import sim_config
from tests.integration.concurrency.databases import fresh_database
from tests.integration.sim.test_api import hand_plan


@pytest.fixture(params=["sqlite", "postgresql"])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Runtime:
    config = sim_config(tmp_path, speedup=2000.0)
    if request.param == "postgresql":
        url = fresh_database(request.getfixturevalue("postgres_url"), f"saga_{request.node.name}")
        config = config.model_copy(update={"ferry": config.ferry.model_copy(update={"database": url})})
    return Runtime(config)


def claimed_saga(rt: Runtime, job_id: int, owner: str, backend: Backend | None = None) -> MoveSaga:
    """A saga of the job's next ready move, under the move claim ``owner`` won for it."""
    (move, claim), = claim_ready_moves(rt.sessions, job_id, owner, 60.0, busy=set(),
                                       admit=lambda m, flying: True, room=1).claims
    return MoveSaga(rt.sessions, backend or rt.backend, rt.config.engine, job_id, move.id, owner=owner,
                    policy=rt.policy(), move_claim=claim)


def stored(rt: Runtime, move_id: int) -> MoveRow:
    with rt.sessions() as session:
        move = session.get(MoveRow, move_id)
        assert move is not None
        return move


def link(rt: Runtime, source: str, target: str) -> LinkRow | None:
    with rt.sessions() as session:
        return session.get(LinkRow, (source, target))


def test_a_move_ends_with_its_row_journal_lock_and_link_written_together(rt: Runtime) -> None:
    plan = Plan.model_validate(hand_plan([("101", "b", "live", 0), ("102", "b", "live", 1)]))
    job_id = create_job(rt.sessions, plan, approved=True)
    first = claimed_saga(rt, job_id, "one")
    assert first.run().state == MoveState.SUCCEEDED
    row = stored(rt, first.move_id)
    assert (row.state, row.step, row.phase, row.attempts) == (MoveState.SUCCEEDED, "cleanup", Phase.DONE, 1)
    assert (row.claimed_by, row.lease_until) == (None, None) and row.finished_at is not None
    assert first._move().figures == row.figures and row.figures["bytes"] > 0  # the saga's copy is the row
    journal = job_detail(rt.sessions, job_id)["journal"]
    assert [e["what"] for e in journal if e["ct"] == "101"][-1] == "succeeded: moved to b"
    assert any(e["step"] == "preflight" and str(e["what"]).startswith("check ") for e in journal)
    with rt.sessions() as session:
        assert session.scalars(select(LockRow.ct).where(LockRow.job_id == job_id)).all() == ["102"]
    learned = link(rt, "a", "b")
    assert learned is not None and learned.samples == 1
    observed = row.figures["bytes"] / 1048576 / row.figures["transfer_s"]
    assert learned.mb_s == pytest.approx(observed)

    second = claimed_saga(rt, job_id, "one")  # the same link again: the figure is folded in
    assert second.run().state == MoveState.SUCCEEDED
    figures = stored(rt, second.move_id).figures
    weight = rt.config.engine.learn_weight
    folded = link(rt, "a", "b")
    assert folded is not None and folded.samples == 2
    assert folded.mb_s == pytest.approx((1 - weight) * observed
                                        + weight * figures["bytes"] / 1048576 / figures["transfer_s"])


def test_a_links_figure_is_inserted_once_then_folded_per_link(rt: Runtime) -> None:
    with rt.sessions.begin() as session:
        learn_link(session, "a", "c", 100.0, 0.5)
    with rt.sessions.begin() as session:
        learn_link(session, "a", "c", 300.0, 0.5)
        learn_link(session, "c", "a", 40.0, 0.5)
    there, back = link(rt, "a", "c"), link(rt, "c", "a")
    assert there is not None and (there.mb_s, there.samples) == (200.0, 2)
    assert back is not None and (back.mb_s, back.samples) == (40.0, 1)


class TakenOverDuring:
    """The real backend; while ``step`` runs, the move's lease runs out in the store and
    ``thief`` claims the move. Records the steps called."""

    def __init__(self, rt: Runtime, job_id: int, step: str, thief: str) -> None:
        self.rt, self.job_id, self.step, self.thief = rt, job_id, step, thief
        self.called: list[str] = []

    def __getattr__(self, name: str) -> Any:
        inner = getattr(self.rt.backend, name)
        if name not in ("preflight", "prepare", "presync", "cutover", "verify", "cleanup", "rollback"):
            return inner

        def step(spec: MoveSpec, ctx: StepContext) -> Any:
            self.called.append(name)
            result = inner(spec, ctx)
            if name == self.step:
                with self.rt.sessions.begin() as session:
                    session.execute(update(MoveRow).where(MoveRow.ct == spec.ct).values(
                        lease_until=utcnow() - dt.timedelta(seconds=1)))
                assert claimed_saga(self.rt, self.job_id, self.thief).move_claim is not None
            return result
        return step


def test_a_write_after_a_takeover_is_refused_with_its_journal_entries(rt: Runtime) -> None:
    job_id = create_job(rt.sessions, Plan.model_validate(hand_plan([("101", "b", "live", 0)])), approved=True)
    backend = TakenOverDuring(rt, job_id, "preflight", thief="two")
    saga = claimed_saga(rt, job_id, "one", backend=backend)  # type: ignore[arg-type]
    with pytest.raises(MoveLost, match="stopping without acting"):
        saga.run()
    claim = saga.move_claim
    assert claim is not None and claim.lost  # refused by the store: on its own clock the lease still held
    assert time.monotonic() - claim.renewed_at < claim.lease_s
    assert backend.called == ["preflight"]  # nothing acted after the takeover
    row = stored(rt, saga.move_id)
    # the preflight's end was not recorded: the next holder calls it again, after observing
    assert (row.state, row.step, row.phase, row.claimed_by) == (MoveState.RUNNING, "preflight", Phase.STARTED, "two")
    journal = job_detail(rt.sessions, job_id)["journal"]
    assert not [e for e in journal if str(e["what"]).startswith("check ")]  # written with the refused row write


def test_a_pooled_connection_the_server_dropped_while_idle_is_replaced(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections are pinged only after PING_IDLE_S in the pool (a saga's writes follow each
    other closely); one the server dropped meanwhile is replaced, not handed out."""
    sessions = open_database(fresh_database(postgres_url, "saga_idle_ping"))
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")

    def drop_the_pooled_connection() -> None:
        with sessions() as session:
            pid = session.scalar(text("SELECT pg_backend_pid()"))
        with admin.connect() as conn:
            assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    try:
        drop_the_pooled_connection()
        monkeypatch.setattr(store, "PING_IDLE_S", 0.0)  # it sat in the pool long enough: pinged
        with sessions() as session:
            assert session.scalar(text("SELECT 1")) == 1
        drop_the_pooled_connection()
        monkeypatch.setattr(store, "PING_IDLE_S", 3600.0)  # used a moment ago: handed out unpinged
        with pytest.raises(OperationalError), sessions() as session:
            session.scalar(text("SELECT 1"))
    finally:
        admin.dispose()
        sessions.kw["bind"].dispose()
