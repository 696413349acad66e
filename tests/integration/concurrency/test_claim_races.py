"""Separate ferry instances race for one job, one node or one container: exactly one wins every
round, and every other gets a one-line JobConflict (never an IntegrityError, never two winners).

Each race runs on SQLite (the default store) and on a real PostgreSQL server, between threads that
each open their own engine (as instances in one process would) and between spawned processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.plan import Goal, Move, Plan
from service.jobs import create_job
from service.store import open_database
from tests.integration.concurrency.racing import KINDS, WON, Race, processes_race, tally, threads_race

ROUNDS = 100
RACERS = 2
#: What the loser's line says, per race.
REFUSAL = {"claim": "is being run by", "evacuate": "is already being evacuated by job",
           "container": "is being moved by job"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ferry.db'}"
    return str(request.getfixturevalue("postgres_url"))


def races(url: str) -> list[Race]:
    """The three races, with ROUNDS jobs made beforehand for the claim race."""
    tag = uuid.uuid4().hex[:8]
    sessions = open_database(url)
    plan = Plan(goal=Goal(kind="rebalance"), inventory_digest="sha256:race",
                moves=[Move(ct=f"{tag}-claimed-{n}", to="b", **{"from": "a"}) for n in range(ROUNDS)])
    job_ids = tuple(create_job(sessions, plan.model_copy(update={"moves": [move]}), approved=True)
                    for move in plan.moves)
    sessions.kw["bind"].dispose()
    return [Race("claim", ROUNDS, tag, job_ids), Race("evacuate", ROUNDS, tag), Race("container", ROUNDS, tag)]


def assert_one_winner_per_round(results: list[tuple[str, int, str, str]]) -> None:
    rounds = tally(results)
    assert sorted(rounds) == sorted((kind, n) for kind in KINDS for n in range(ROUNDS))  # none lost
    for (kind, round_no), outcomes in rounds.items():
        winners = [o for o in outcomes if o == WON]
        losers = [o for o in outcomes if o != WON]
        assert len(winners) == 1, (kind, round_no, outcomes)
        assert len(losers) == RACERS - 1 and all(REFUSAL[kind] in line and "\n" not in line
                                                 for line in losers), (kind, round_no, outcomes)


@pytest.mark.parametrize("race", [threads_race, processes_race], ids=["threads", "processes"])
def test_exactly_one_racer_wins_every_round(store_url: str, race: Callable[..., list]) -> None:
    results = race(store_url, races(store_url), RACERS)
    assert_one_winner_per_round(results)
