"""Racers for the claim and job-creation races: each opens its own store connection, as a separate
ferry instance would, meets its rivals at a barrier every round, and makes the same claim or
creates the same job at once. Module-level functions, so that separate processes can run them."""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from fleet.plan import Goal, Move, Plan
from service.jobs import JobConflict, claim_job, create_job
from service.store import open_database

#: Every wait of a racer is bounded: a rival that died breaks the barrier instead of hanging.
WAIT_S = 60.0
KINDS = ("claim", "evacuate", "container")
WON = "won"


class Meeting(Protocol):
    def wait(self, timeout: float | None = None) -> int: ...


class Sink(Protocol):
    def put(self, item: Any) -> None: ...


@dataclass(frozen=True)
class Race:
    """One race of ``rounds`` rounds: ``kind`` is what every racer does at once each round;
    ``job_ids`` are the jobs claimed (kind "claim"); ``tag`` keeps nodes and containers apart
    between races sharing one database."""

    kind: str
    rounds: int
    tag: str
    job_ids: tuple[int, ...] = ()


def one_move_plan(kind: str, node: str, ct: str) -> Plan:
    goal = Goal(kind="evacuate", nodes=[node]) if kind == "evacuate" else Goal(kind="rebalance")
    return Plan(goal=goal, inventory_digest="sha256:race",
                moves=[Move(ct=ct, to=f"{node}-to", method="restart", wave=0, **{"from": node})])


def attempt(sessions: sessionmaker[Session], race: Race, round_no: int, name: str) -> str:
    """Do the race's act once; WON, or the refusal's one line."""
    node = f"{race.tag}-n{round_no}"
    try:
        if race.kind == "claim":
            claim_job(sessions, race.job_ids[round_no], name, lease_s=600)
        elif race.kind == "evacuate":  # one node, a different container per racer
            create_job(sessions, one_move_plan("evacuate", node, f"{node}-{name}"), approved=True)
        else:  # one container, wanted by every racer
            create_job(sessions, one_move_plan("rebalance", node, f"{node}-ct"), approved=True)
    except JobConflict as exc:
        return exc.line()
    return WON


def run_racer(url: str, races: list[Race], name: str, meeting: Meeting, sink: Sink) -> None:
    """Run every race's rounds; put (kind, round, name, outcome) per round into ``sink``."""
    sessions = open_database(url)
    for race in races:
        for round_no in range(race.rounds):
            meeting.wait(WAIT_S)
            try:
                outcome = attempt(sessions, race, round_no, name)
            except Exception as exc:  # noqa: BLE001 - anything but a JobConflict is a failure: report it
                outcome = f"FAILED {exc.__class__.__name__}: {exc}"
            sink.put((race.kind, round_no, name, outcome))
    sessions.kw["bind"].dispose()


class ListSink:
    """A sink for racer threads."""

    def __init__(self) -> None:
        self.items: list[tuple[str, int, str, str]] = []
        self._lock = threading.Lock()

    def put(self, item: tuple[str, int, str, str]) -> None:
        with self._lock:
            self.items.append(item)


def tally(results: list[tuple[str, int, str, str]]) -> dict[tuple[str, int], list[str]]:
    """Outcomes per (kind, round)."""
    rounds: dict[tuple[str, int], list[str]] = {}
    for kind, round_no, _name, outcome in results:
        rounds.setdefault((kind, round_no), []).append(outcome)
    return rounds


def threads_race(url: str, races: list[Race], racers: int) -> list[tuple[str, int, str, str]]:
    """Race ``racers`` threads, each with its own engine and sessionmaker."""
    sink, meeting = ListSink(), threading.Barrier(racers)
    threads = [threading.Thread(target=run_racer, args=(url, races, f"thread-{i}", meeting, sink))
               for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_S * 3)
    return sink.items


def processes_race(url: str, races: list[Race], racers: int) -> list[tuple[str, int, str, str]]:
    """Race ``racers`` processes (spawned: nothing of this process's connections is inherited)."""
    context = multiprocessing.get_context("spawn")
    queue, meeting = context.Queue(), context.Barrier(racers)
    procs = [context.Process(target=run_racer, args=(url, races, f"process-{i}", meeting, queue))
             for i in range(racers)]
    for proc in procs:
        proc.start()
    expected = racers * sum(race.rounds for race in races)
    results: list[tuple[str, int, str, str]] = []
    try:
        while len(results) < expected:
            results.append(queue.get(timeout=WAIT_S * 2))
    except queue_module.Empty:
        pass  # a racer died: the caller sees rounds missing
    finally:
        for proc in procs:
            proc.join(timeout=WAIT_S)
            if proc.is_alive():
                proc.kill()
    return results
