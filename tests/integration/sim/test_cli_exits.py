"""Exit statuses tell how the job ended, and unexpected errors stay one line (the real ``ferry``
command on the simulated fleet, with injected faults and operator controls)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
import subprocess
import time
from pathlib import Path

from service import jobs
from service.config import load_config
from service.lifecycle import JobState, MoveState
from service.runtime import Runtime
from tests.conftest import REPO
from tests.integration.sim.test_cli import FERRY, assert_one_line_error, ferry, write_config
from tests.integration.sim.test_sim_engine import make_plan

JOB_FAILED, JOB_CANCELLED, JOB_HELD = 3, 4, 5


def one_hint(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_rolled_back_job_exits_3_with_a_hint_in_table_and_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, faults='[{kind = "fail", step = "preflight", remaining = 100}]')
    result = ferry("evacuate", "a", "--yes", config=config, check=False)
    assert result.returncode == JOB_FAILED, (result.stdout, result.stderr)
    hint = one_hint(result)
    assert hint.startswith(f"ferry: job 1 ended {JobState.ROLLED_BACK}") and "see 'ferry job show 1'" in hint
    again = ferry("evacuate", "a", "--yes", "--format", "json", config=config, check=False)
    assert again.returncode == JOB_FAILED
    assert f'"state": "{JobState.ROLLED_BACK}"' in again.stdout  # the summary still on stdout
    assert one_hint(again).startswith(f"ferry: job 2 ended {JobState.ROLLED_BACK}")


def test_cancelled_job_exits_4(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    job_id = jobs.create_job(Runtime(load_config(config)).sessions, make_plan(), approved=False)
    ferry("job", "cancel", str(job_id), config=config)
    result = ferry("jobs", "resume", config=config, check=False)
    assert result.returncode == JOB_CANCELLED, (result.stdout, result.stderr)
    assert one_hint(result) == f"ferry: job {job_id} ended cancelled; see 'ferry job show {job_id}'"


def test_paused_job_exits_5_and_says_how_to_resume(tmp_path: Path) -> None:
    config = write_config(tmp_path, speedup=50.0)  # ~1 s wall per move, one at a time: ~5 s in all
    config.write_text(config.read_text() + "[policy]\nmax_outgoing_per_node = 1\n")
    argv = [FERRY, "--config", str(config), "evacuate", "a", "--yes"]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                           stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        rt = Runtime(load_config(config))
        deadline = time.monotonic() + 60
        while not any(m["state"] == MoveState.RUNNING for m in _moves(rt)):
            assert time.monotonic() < deadline and run.poll() is None, "no move started"
            time.sleep(0.05)
        # paused through the store, as 'ferry job pause 1' does, but without a second process's
        # start-up time: on a loaded machine that alone can outlast the job
        jobs.control_job(rt.sessions, 1, "pause")
        out, err = run.communicate(timeout=60)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == JOB_HELD, (out, err)
    assert err.strip().splitlines() == ["ferry: job 1 is paused; resume it with 'ferry job resume 1'"]
    resumed = ferry("job", "resume", "1", config=config)  # the same job then succeeds: exit 0
    assert "succeeded" in resumed.stdout


def test_job_waiting_for_a_closed_window_exits_5(tmp_path: Path) -> None:
    closed = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).strftime("%a")  # not today, in any zone
    config = write_config(tmp_path)
    config.write_text(config.read_text() + f'[schedule]\nwindows = ["{closed} 01:00-01:01"]\n')
    result = ferry("evacuate", "a", "--yes", "--window", "--format", "json", config=config, check=False)
    assert result.returncode == JOB_HELD, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["counts"].get(MoveState.SUCCEEDED, 0) == 0
    hint = one_hint(result)
    assert hint.startswith("ferry: job 1 has not finished") and "'ferry serve' continues it" in hint


def _moves(rt: Runtime) -> list[dict]:
    try:
        return jobs.job_detail(rt.sessions, 1)["moves"]
    except Exception:  # the job is not stored yet
        return []


def test_internal_error_is_one_line_with_a_private_trace_file(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state" / "ferry.db").mkdir(parents=True)  # a directory where the store file belongs
    result = ferry("jobs", config=config, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    line = one_hint(result)
    found = re.fullmatch(r"ferry: internal error: (\w+): .+ \(trace saved to (.+)\)", line)
    assert found, line
    trace = Path(found.group(2))
    assert trace.parent == (tmp_path / "state" / "logs").resolve()
    assert stat.S_IMODE(trace.stat().st_mode) == 0o600
    assert "Traceback" in trace.read_text() and found.group(1) in trace.read_text()
    # user mistakes are still exit 2: a missing plan file (one line), a malformed argument (usage)
    assert_one_line_error(ferry("run", str(tmp_path / "missing.json"), "--yes", config=config, check=False))
    assert ferry("job", "show", "x", config=config, check=False).returncode == 2


def test_help_documents_the_exit_codes() -> None:
    text = " ".join(ferry("--help").stdout.split())
    for needle in ("0 succeeded", "2 user mistake", "3 job failed or rolled back", "4 job cancelled",
                   "5 job paused or waiting"):
        assert needle in text
