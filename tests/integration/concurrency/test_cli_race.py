"""Two operators run ``ferry evacuate`` on the same node at the same moment, as two processes on
the default SQLite store: one evacuation starts, the other ends with exit status 2 and one line
naming the job that has the node (never an IntegrityError, never two evacuations)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from service.config import load_config
from service.jobs import list_jobs
from service.runtime import Runtime
from tests.conftest import REPO
from tests.integration.sim.test_cli import FERRY, write_config

WAIT_S = 120.0


def test_two_racing_evacuations_of_one_node_start_one_job(tmp_path: Path) -> None:
    config = write_config(tmp_path, speedup=5.0)  # the winner's job outlasts the loser's start
    rt = Runtime(load_config(config))
    rt.sessions  # noqa: B018 - make the store first, so both racers start with the same schema
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # these processes run this checkout's ferry
    procs = [subprocess.Popen([FERRY, "--config", str(config), "evacuate", "a", "--yes", "--format", "json"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO, env=env, start_new_session=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + WAIT_S
        while all(proc.poll() is None for proc in procs):
            assert time.monotonic() < deadline, "neither evacuation ended nor was refused"
            time.sleep(0.1)
        loser = next(proc for proc in procs if proc.poll() is not None)
        _, stderr = loser.communicate(timeout=WAIT_S)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=WAIT_S)
    lines = stderr.strip().splitlines()
    assert loser.returncode == 2, stderr
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    jobs = list_jobs(rt.sessions)
    assert len(jobs) == 1  # one evacuation, and it is the one the refusal names
    job_id = jobs[0]["id"]
    assert lines[0].startswith(f"ferry: error: node='a': is already being evacuated by job {job_id} ("), lines
    assert lines[0].endswith(f"see 'ferry job show {job_id}'"), lines  # its state then: approved or running
