"""``ferry serve`` logs to stderr: every line timestamped in UTC, plain or JSON, with every job
and move transition (a real server process on a loopback port, a job created through the API)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from service.jobs import create_job
from service.lifecycle import JOB_FINAL, JobState, MoveState
from service.runtime import Runtime
from tests.conftest import REPO, sim_config
from tests.integration.sim.test_api import AUTH, EMPTY_A, TOKEN, free_port, hand_plan, wait_for
from tests.integration.sim.test_cli import FERRY, write_config
from tests.integration.sim.test_sim_engine import make_plan

MOVES = EMPTY_A[2:4]  # 103 and 104, restart moves
PLAIN = re.compile(r"(\S+) (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) (.*)")


def serve_and_run_a_job(tmp_path: Path, log_format: str) -> tuple[int, str]:
    """Start ``ferry serve``, run one approved job through the API, stop it with SIGTERM;
    the job's id and the server's stderr."""
    config = write_config(tmp_path)
    config.write_text(config.read_text() + "[schedule]\npoll_s = 0.2\n")
    port = free_port()
    argv = [FERRY, "--config", str(config), "serve", "--port", str(port), "--log-format", log_format]
    proc = subprocess.Popen(argv, env={**os.environ, "FERRY_API_TOKEN": TOKEN, "PYTHONPATH": str(REPO)},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: listening(port) or proc.poll() is not None, timeout=30)
        job_id = run_job_through_api(f"http://127.0.0.1:{port}")
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=30)[1]
    except BaseException:
        proc.kill()  # never leave a server behind a failed test
        proc.wait(timeout=10)
        raise
    assert proc.returncode == 0, err
    return job_id, err


def run_job_through_api(base: str) -> int:
    """Create an approved job with the token and wait (bounded) until the worker finished it."""
    created = httpx.post(f"{base}/v1/jobs", headers=AUTH, timeout=30,
                         json={"plan": hand_plan(MOVES), "approve": True})
    assert created.status_code == 201, created.text
    job_url = f"{base}/v1/jobs/{created.json()['id']}"
    wait_for(lambda: httpx.get(job_url, headers=AUTH, timeout=5).json()["state"] in JOB_FINAL)
    return created.json()["id"]


def listening(port: int) -> bool:
    """Whether the server accepts connections on the loopback port yet."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def utc(ts: str) -> dt.datetime:
    assert ts.endswith(("Z", "+00:00")), ts
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def transitions(messages: list[str], what: str) -> list[tuple[str, str]]:
    """The ``old -> new`` pairs logged for ``what`` (``job 1``, ``job 1 move 103``), in order."""
    found = (re.fullmatch(rf"{re.escape(what)}: (\w+) -> (\w+)(: .*)?", m) for m in messages)
    return [(f.group(1), f.group(2)) for f in found if f]


def assert_transitions(messages: list[str], job_id: int) -> None:
    job = transitions(messages, f"job {job_id}")
    assert job == [(JobState.APPROVED, JobState.RUNNING), (JobState.RUNNING, JobState.SUCCEEDED)], messages
    for ct, *_ in MOVES:
        move = transitions(messages, f"job {job_id} move {ct}")
        assert (MoveState.PENDING, MoveState.RUNNING) in move, messages
        assert move[-1] == (MoveState.RUNNING, MoveState.SUCCEEDED), messages


def test_plain_lines_carry_utc_time_level_and_logger(tmp_path: Path) -> None:
    job_id, err = serve_and_run_a_job(tmp_path, "plain")
    lines = err.strip().splitlines()
    parsed = [PLAIN.fullmatch(line) for line in lines]
    assert all(parsed), [line for line, p in zip(lines, parsed, strict=True) if not p]
    assert all(utc(p.group(1)).utcoffset() == dt.timedelta(0) for p in parsed if p)
    assert any(p.group(3).startswith("uvicorn") for p in parsed if p)  # uvicorn's lines, same format
    # the event's fields follow the message as key=value
    messages = [re.sub(r"( (job|move|ct|state)=\S+)+$", "", p.group(4)) for p in parsed if p]
    assert_transitions(messages, job_id)
    assert any(p.group(4).endswith(f"job={job_id} state={JobState.SUCCEEDED}") for p in parsed if p)


def test_json_lines_are_objects_with_the_event_fields(tmp_path: Path) -> None:
    job_id, err = serve_and_run_a_job(tmp_path, "json")
    events = [json.loads(line) for line in err.strip().splitlines()]
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in events)
    assert all(utc(e["ts"]).utcoffset() == dt.timedelta(0) for e in events)
    assert_transitions([e["msg"] for e in events], job_id)
    moves = [e for e in events if e.get("ct") == MOVES[0][0] and e.get("state") == MoveState.SUCCEEDED]
    assert moves and moves[0]["job"] == job_id and isinstance(moves[0]["move"], int)
    assert any(e["logger"] == "uvicorn.access" for e in events)


def test_a_rolled_back_move_and_job_log_warnings_with_the_reason(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    rt = Runtime(sim_config(tmp_path, faults=[{"kind": "fail", "step": "verify", "ct": "104", "remaining": 1}]))
    job_id = create_job(rt.sessions, make_plan([("104", "c", "restart")]), approved=True)
    with caplog.at_level(logging.INFO, logger="ferry"):
        assert rt.engine().run_job(job_id).state == JobState.ROLLED_BACK
    warned = {(r.name, r.getMessage().split(":")[1].strip()) for r in caplog.records if r.levelno == logging.WARNING}
    assert ("ferry.saga", f"{MoveState.RUNNING} -> {MoveState.ROLLING_BACK}") in warned, caplog.text
    assert ("ferry.jobs", f"{JobState.RUNNING} -> {JobState.ROLLED_BACK}") in warned, caplog.text
    ended = [r for r in caplog.records if getattr(r, "state", None) == MoveState.ROLLED_BACK]
    assert ended and ended[0].ct == "104" and "verify of 104 failed" in ended[0].getMessage()
