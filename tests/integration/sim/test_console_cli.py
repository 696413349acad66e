"""What an operator sees in an 80-column terminal: tables that fit (reasons wrap; ``--wide`` keeps
one line per row), times that say UTC, progress bars that count moves and say MB/s and ETA, and
``job show --watch`` that puts moves in flight and failed first and exits with the job's code."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from service import jobs
from service.config import load_config
from service.lifecycle import JobState, MoveState
from service.progress import JobProgress
from service.render import ended_job, watch_order
from service.runtime import Runtime
from tests.conftest import REPO
from tests.integration.sim.test_cli import FERRY, ferry, write_config
from tests.integration.sim.test_sim_engine import make_plan

JOB_FAILED = 3


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@pytest.fixture
def columns_80(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


@pytest.mark.usefixtures("columns_80")
def test_plan_jobs_and_job_tables_fit_80_columns_and_say_utc(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert widest(ferry("inventory", config=config).stdout) <= 80
    plan = json.loads(ferry("plan", "evacuate", "a", "--format", "json", config=config).stdout)
    table = ferry("plan", "evacuate", "a", config=config).stdout
    assert widest(table) <= 80
    words = re.findall(r"\S+", plan["moves"][0]["reason"])
    assert all(word in table for word in words), (words, table)  # wrapped, not cut
    ferry("evacuate", "a", "--yes", config=config)
    jobs = ferry("jobs", config=config).stdout
    assert widest(jobs) <= 80 and "created (UTC)" in jobs and "succeeded" in jobs
    shown = ferry("job", "show", "1", config=config).stdout
    assert widest(shown) <= 80 and all(m["ct"] in shown for m in plan["moves"])


@pytest.mark.usefixtures("columns_80")
def test_wide_keeps_each_reason_on_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    reason = json.loads(ferry("plan", "evacuate", "a", "--format", "json", config=config).stdout)["moves"][0]["reason"]
    wide = ferry("plan", "evacuate", "a", "--wide", config=config).stdout
    assert any(reason in line for line in wide.splitlines()), wide
    assert widest(wide) > 80


@pytest.mark.usefixtures("columns_80")
def test_watch_exits_with_the_code_of_the_job_it_watched(tmp_path: Path) -> None:
    config = write_config(tmp_path, faults='[{kind = "fail", step = "preflight", remaining = 100}]')
    assert ferry("evacuate", "a", "--yes", config=config, check=False).returncode == JOB_FAILED
    started = time.monotonic()
    watched = ferry("job", "show", "1", "--watch", config=config, check=False, timeout=60)
    assert watched.returncode == JOB_FAILED, (watched.stdout, watched.stderr)
    assert watched.stderr.strip().startswith(f"ferry: job 1 ended {JobState.ROLLED_BACK}")
    assert widest(watched.stdout) <= 80 and "rolled_back" in watched.stdout
    assert time.monotonic() - started < 50  # an ended job is shown once, not refreshed for ever


def test_watch_lists_moves_in_flight_then_failed_then_the_rest() -> None:
    states = [MoveState.SUCCEEDED, MoveState.PENDING, MoveState.FAILED, MoveState.RUNNING,
              MoveState.ROLLED_BACK, MoveState.ROLLING_BACK]
    moves = [{"ct": str(i), "state": state} for i, state in enumerate(states)]
    assert [m["state"] for m in watch_order(moves)] == [
        MoveState.RUNNING, MoveState.ROLLING_BACK, MoveState.FAILED, MoveState.ROLLED_BACK,
        MoveState.SUCCEEDED, MoveState.PENDING]
    failed = {"id": 4, "state": JobState.FAILED, "message": "", "moves": [
        {"ct": "101", "state": MoveState.FAILED, "message": "rollback impossible: start 101 on b by hand"}]}
    assert ended_job(failed).messages == ["rollback impossible: start 101 on b by hand"]


def test_progress_counts_moves_and_says_rate_and_eta_in_80_columns() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    gib = 1024**3
    with JobProgress(console, 8) as progress:
        progress.update("101", "precopy", 0, 4 * gib)
        time.sleep(0.2)
        progress.update("101", "precopy", gib, 4 * gib)
        time.sleep(0.2)
        progress.update("101", "precopy", 2 * gib, 4 * gib)
        progress.update("a-very-long-container-name-0042", "precopy", gib, 4 * gib)
        progress.update("102", "done", 0, 0)
    text = out.getvalue()
    assert widest(text) <= 80, text
    assert re.search(r"all moves .* 1/8 moves", text), text
    assert re.search(r"101 precopy .* 2\.0/4\.0 GiB \d+ MB/s ETA \d:\d\d:\d\d", text), text
    assert "bytes" not in text


def test_ctrl_c_stops_watching_a_job_that_goes_on(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    rt = Runtime(load_config(config))
    job_id = jobs.create_job(rt.sessions, make_plan(), approved=False)  # pending: never ends by itself
    argv = [FERRY, "--config", str(config), "job", "show", str(job_id), "--watch"]
    watch = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                             stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"})
    try:
        deadline = time.monotonic() + 60
        while watch.poll() is None and time.monotonic() < deadline and not _shown(watch):
            time.sleep(0.2)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
    finally:
        watch.kill()
    assert watch.returncode == 130, (out, err)
    assert err.strip() == f"ferry: stopped watching job {job_id}; it goes on" and "Traceback" not in err
    with rt.sessions() as session:
        assert jobs.get_job(session, job_id).state == JobState.PENDING  # untouched


def _shown(process: subprocess.Popen[str]) -> bool:
    """Whether the watch has drawn its first frame (its stdout has a line to read)."""
    import select

    ready, _, _ = select.select([process.stdout], [], [], 0)
    return bool(ready)
