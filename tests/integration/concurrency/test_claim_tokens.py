"""The claim's fencing token: every claim takes a new one, a write under an old one or after the
lease ran out is refused, and a store made before tokens existed gets them by migration."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, text

from fleet.plan import Plan
from service import store
from service.jobs import Claim, JobConflict, LeaseLost, claim_job, create_job, renew_claim
from service.store import JobRow, open_database, utcnow
from tests.integration.sim.test_api import hand_plan


def one_job(url: str) -> int:
    return create_job(open_database(url), Plan.model_validate(hand_plan([("101", "b", "live", 0)])),
                      approved=True)


def test_each_claim_takes_a_new_token_and_old_tokens_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ferry.db'}"
    sessions, job_id = open_database(url), one_job(url)
    first = claim_job(sessions, job_id, "a", lease_s=60)
    with pytest.raises(JobConflict, match="is being run by a"):
        claim_job(sessions, job_id, "b", lease_s=60)
    again = claim_job(sessions, job_id, "a", lease_s=60)  # the same instance claiming anew
    assert again.claim_token == first.claim_token + 1
    with pytest.raises(LeaseLost), sessions.begin() as session:
        renew_claim(session, Claim(job_id, "a", first.claim_token, 60))
    with sessions.begin() as session:
        renew_claim(session, Claim(job_id, "a", again.claim_token, 60))


def test_a_claim_whose_lease_ran_out_is_refused_even_if_nobody_took_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ferry.db'}"
    sessions, job_id = open_database(url), one_job(url)
    held = claim_job(sessions, job_id, "a", lease_s=60)
    with sessions.begin() as session:
        session.get(JobRow, job_id).lease_until = utcnow() - dt.timedelta(seconds=1)  # type: ignore[union-attr]
    with pytest.raises(LeaseLost, match="stopping without acting"), sessions.begin() as session:
        session.execute(text("UPDATE jobs SET message = 'written by a stale owner'"))
        renew_claim(session, Claim(job_id, "a", held.claim_token, 60))  # refused: the write is undone
    with sessions() as session:
        assert session.get(JobRow, job_id).message == ""  # type: ignore[union-attr]


def test_a_store_from_before_claim_tokens_is_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ferry.db'}"
    config = AlembicConfig()
    config.set_main_option("script_location", str(Path(store.__file__).parent / "migrations"))
    engine = create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(text("INSERT INTO jobs (id, kind, nodes, state, plan, message, created_at, updated_at)"
                                " VALUES (7, 'evacuate', '[]', 'running', '{}', '', '2026-01-01', '2026-01-01')"))
    engine.dispose()
    sessions = open_database(url)
    assert claim_job(sessions, 7, "a", lease_s=60).claim_token == 1
