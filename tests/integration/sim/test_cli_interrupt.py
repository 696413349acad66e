"""Ctrl-C on a job run in the foreground: the first pauses it without cutting a move in half, the
second leaves at once, and either way the same job then finishes with every container once (the
real ``ferry`` command on the simulated fleet, sent real SIGINTs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from service import jobs
from service.config import load_config
from service.lifecycle import MOVE_IN_FLIGHT, JobState, MoveState
from service.runtime import Runtime
from tests.conftest import REPO
from tests.integration.sim.test_cli import FERRY, ferry, write_config

JOB_HELD, INTERRUPTED = 5, 130


def _start_evacuation(tmp_path: Path, lease_s: float = 60.0) -> tuple[Path, subprocess.Popen[str], Runtime]:
    """``ferry evacuate a --yes`` with moves slow enough (~5 s wall each, one at a time) that a
    signal sent during the first one lands long before the job could end."""
    config = write_config(tmp_path, speedup=10.0)
    text = config.read_text().replace("[engine]\n", f"[engine]\nlease_s = {lease_s}\n", 1)
    config.write_text(text + "[policy]\nmax_outgoing_per_node = 1\n")
    argv = [FERRY, "--config", str(config), "evacuate", "a", "--yes"]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                           stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    rt = Runtime(load_config(config))
    deadline = time.monotonic() + 60
    while not any(m["state"] == MoveState.RUNNING for m in _moves(rt)):
        if time.monotonic() > deadline or run.poll() is not None:
            run.kill()
            raise AssertionError(f"no move started: {run.communicate()}")
        time.sleep(0.05)
    return config, run, rt


def _moves(rt: Runtime) -> list[dict]:
    try:
        return jobs.job_detail(rt.sessions, 1)["moves"]
    except Exception:  # the job is not stored yet
        return []


def _finish_fast(config: Path) -> None:
    """The rest of the job need not be slow: the same state, a faster simulated clock."""
    config.write_text(config.read_text().replace("speedup = 10.0", "speedup = 20000.0"))


def test_first_ctrl_c_pauses_the_job_after_the_moves_in_flight(tmp_path: Path) -> None:
    config, run, rt = _start_evacuation(tmp_path)
    try:
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=120)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == JOB_HELD, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("ferry: pausing job 1: moves in flight finish their step"), err
    assert lines[-1] == "ferry: job 1 is paused; resume it with 'ferry job resume 1'"
    moves = _moves(rt)
    assert jobs.job_detail(rt.sessions, 1)["state"] == JobState.PAUSED
    assert not [m for m in moves if m["state"] in MOVE_IN_FLIGHT], moves  # none cut in half
    assert [m for m in moves if m["state"] == MoveState.SUCCEEDED], moves  # the one running finished
    assert [m for m in moves if m["state"] == MoveState.PENDING], moves  # and no new one started
    _finish_fast(config)
    resumed = ferry("job", "resume", "1", "--format", "json", config=config)
    assert '"state": "succeeded"' in resumed.stdout
    assert all(m["state"] == MoveState.SUCCEEDED for m in _moves(rt))
    _assert_each_container_once_at_its_target(config, _moves(rt))


def test_second_ctrl_c_leaves_at_once_and_the_job_resumes_after_the_lease(tmp_path: Path) -> None:
    config, run, rt = _start_evacuation(tmp_path, lease_s=2.0)
    try:
        run.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30  # the first press is acknowledged before the second is sent
        while jobs.job_detail(rt.sessions, 1)["state"] != JobState.PAUSED:
            assert time.monotonic() < deadline and run.poll() is None, "the first Ctrl-C did not pause"
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == INTERRUPTED, (out, err)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("ferry: left job 1 with its moves in flight")
    assert [m for m in _moves(rt) if m["state"] in MOVE_IN_FLIGHT]  # left as a crash would leave it
    _finish_fast(config)
    deadline = time.monotonic() + 60  # the dead process's lease (2 s) runs out, then resume works
    while (resumed := ferry("job", "resume", "1", "--format", "json", config=config, check=False)).returncode:
        assert resumed.returncode == 2 and "is being run by" in resumed.stderr, resumed.stderr
        assert time.monotonic() < deadline, "the abandoned lease never ran out"
        time.sleep(0.5)
    assert all(m["state"] == MoveState.SUCCEEDED for m in _moves(rt))
    _assert_each_container_once_at_its_target(config, _moves(rt))


def _assert_each_container_once_at_its_target(config: Path, moves: list[dict]) -> None:
    inventory = json.loads(ferry("inventory", "--format", "json", config=config).stdout)
    where = [(c["id"], c["node"]) for c in inventory["containers"]]
    for move in moves:
        assert [node for ct, node in where if ct == move["ct"]] == [move["to"]], move
