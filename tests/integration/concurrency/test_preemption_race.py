"""A lower job starting a move races a higher job taking its container: exactly one of them gets
it, every round. Either the evacuation is stored and the rebalance's move is yielded (the backend
never saw a step of it from the rebalance), or the move started first and the evacuation is
refused in one line (a running move is never interrupted). Never both, never a traceback.

Each round, on the sim backend and the default SQLite store: a rebalance (its own engine, in a
thread) is about to start the move of one container while an evacuation of its node that wants
that container is created (another thread, its own store connection)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from fleet.plan import Goal, Move, Plan
from service.engine import Engine
from service.jobs import JobConflict, create_job, job_detail, set_job_state
from service.lifecycle import JobState, MoveState
from service.runtime import Runtime
from service.store import open_database
from tests.conftest import sim_config

ROUNDS = 100
WAIT_S = 60.0


def wide_fleet(tmp: Path) -> Path:
    """Node a with one small container per round; b and c with room for all of them."""
    node = {"platform": "proxmox", "cpus": 64, "memory_mb": 262144, "kernel": "6.8", "version": "8.3",
            "storage": {"local": {"total_gb": 10000, "used_gb": 0}}, "nic_mb_s": 10000}
    fleet = {"version": 1, "nodes": [{"name": n, **node} for n in "abc"],
             "containers": [{"id": str(1000 + i), "node": "a", "cpus": 1, "memory_mb": 64, "disk_gb": 0.01,
                             "storage": "local"} for i in range(ROUNDS)]}
    path = tmp / "wide.json"
    path.write_text(json.dumps(fleet))
    return path


def one_move(kind: str, ct: str, to: str) -> Plan:
    goal = Goal(kind="evacuate", nodes=["a"]) if kind == "evacuate" else Goal(kind="rebalance")
    return Plan(goal=goal, inventory_digest="sha256:race",
                moves=[Move(ct=ct, to=to, method="restart", **{"from": "a"})])


def race_round(rt: Runtime, ct: str) -> tuple[str, int, int | None]:
    """One round: (the evacuation's outcome, the rebalance job, the evacuation job or None)."""
    rebalance = create_job(rt.sessions, one_move("rebalance", ct, "b"), approved=True)
    meeting, outcome = threading.Barrier(2), {}
    mine, theirs = open_database(rt.config.database_url), open_database(rt.config.database_url)
    engine = Engine(mine, rt.backend, rt.policy(), rt.config.engine)

    def run_rebalance() -> None:
        meeting.wait(WAIT_S)
        engine.run_job(rebalance)

    def evacuate() -> None:
        meeting.wait(WAIT_S)
        try:
            outcome["evacuation"] = create_job(theirs, one_move("evacuate", ct, "c"), approved=True)
            outcome["line"] = "won"
        except JobConflict as exc:
            outcome["line"] = exc.line()

    threads = [threading.Thread(target=run_rebalance), threading.Thread(target=evacuate)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    for sessions in (mine, theirs):  # each round's instances close their connections
        sessions.kw["bind"].dispose()
    return outcome["line"], rebalance, outcome.get("evacuation")


def test_a_move_is_either_taken_over_or_run_never_both(tmp_path: Path) -> None:
    rt = Runtime(sim_config(tmp_path, fleet=wide_fleet(tmp_path)))
    tally = {"taken": 0, "ran": 0}
    for n in range(ROUNDS):
        ct = str(1000 + n)
        line, rebalance, evacuation = race_round(rt, ct)
        lower = job_detail(rt.sessions, rebalance)
        [move] = lower["moves"]
        steps = [j for j in lower["journal"] if j["kind"] == "command"]
        if evacuation is None:
            assert "\n" not in line and ("right now" in line or "a moment ago" in line), (n, line)
        if move["state"] == MoveState.SUCCEEDED:  # it started first (or even ended before the evacuation looked)
            assert steps, (n, lower)
            tally["ran"] += 1
        else:  # taken over: the rebalance never acted on it, and ended having yielded its only move
            assert evacuation is not None and move["state"] == MoveState.YIELDED and steps == [], (n, lower)
            assert lower["state"] == JobState.SUCCEEDED
            tally["taken"] += 1
        if evacuation is not None:  # free node a for the next round
            set_job_state(rt.sessions, evacuation, JobState.CANCELLING)
            set_job_state(rt.sessions, evacuation, JobState.CANCELLED)
    assert tally["taken"] + tally["ran"] == ROUNDS, tally
    print(f"pre-emption race: {tally}")
