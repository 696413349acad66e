"""The README's command lines work as written: every ``curl`` line of "REST API" against a real
``ferry serve`` on a loopback port, and every ``ferry`` line of "Using ferry" (but ``serve``), each
run by bash in a fresh directory over the simulated demo fleet."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.sim.test_api import TOKEN, free_port, wait_for
from tests.integration.sim.test_cli import DEMO_FLEET, FERRY, REPO

README = REPO / "README.md"


def block_of(section: str) -> list[str]:
    """The command lines of the first ``sh`` block under ``## <section>`` of README.md."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", body, re.S)
    assert block, f"no sh block under {section}"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def shell_env(tmp_path: Path, speedup: float) -> dict[str, str]:
    """A shell like the README's reader's: ferry on PATH, the demo fleet, state in ``tmp_path``."""
    config = tmp_path / "ferry.toml"
    config.write_text(f'[ferry]\nbackend = "sim"\nstate_dir = "{tmp_path / "state"}"\n'
                      f'[sim]\nfleet_file = "{DEMO_FLEET}"\nspeedup = {speedup}\n')
    return {**os.environ, "PATH": f"{Path(FERRY).parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
            "FERRY_CONFIG": str(config), "FERRY_API_TOKEN": TOKEN}


def bash(line: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``ferry serve`` on a free loopback port, moves slow enough (speedup 2) that a job is still
    running when the README pauses it; its output goes to a file (a pipe could fill and block it)."""
    env, port = shell_env(tmp_path, speedup=2), free_port()
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen([FERRY, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=60)
        yield f"127.0.0.1:{port}", env
    finally:  # the job's moves are slow on purpose: stop at once, the state dir is thrown away
        proc.kill()
        proc.wait(timeout=30)


def test_every_curl_line_of_the_rest_api_section_answers_2xx(served: tuple[str, dict[str, str]],
                                                             tmp_path: Path) -> None:
    address, env = served
    lines = block_of("REST API")
    setup = [line for line in lines if line.startswith("H=")]
    assert setup and any(line.startswith("export FERRY_API_TOKEN=") for line in lines)
    curls = [line for line in lines if line.startswith("curl ")]
    assert len(curls) >= 7
    for line in curls:
        assert "localhost:8080" in line and line.startswith("curl -s ")
        # -f: curl exits non-zero on any answer >= 400, so exit 0 means a 2xx (no redirects here)
        run = line.replace("localhost:8080", address).replace("curl -s ", "curl -sf --max-time 60 ", 1)
        result = bash("\n".join([*setup, run]), tmp_path, env)
        assert result.returncode == 0, (line, result.returncode, result.stdout, result.stderr)
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["goal"] == {"kind": "evacuate", "nodes": ["n1"]} and plan["moves"]
    job = httpx.get(f"http://{address}/v1/jobs/1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert job.json()["state"] == "paused" and len(job.json()["moves"]) == len(plan["moves"])


def exits_as_documented(line: str, result: subprocess.CompletedProcess[str]) -> bool:
    """0, or (a line naming a job: ``ferry job <verb> 3``) exit 2 with the one-line refusal the
    README documents for a user mistake: no such job, or a state that refuses the control."""
    if result.returncode == 0:
        return True
    job = re.search(r"\bferry job \w+ (\d+)", line)
    lines = result.stderr.strip().splitlines()
    return (result.returncode == 2 and job is not None and len(lines) == 1
            and lines[0].startswith(f"ferry: error: job={job.group(1)}: "))


def test_every_ferry_line_of_using_ferry_exits_as_documented(tmp_path: Path) -> None:
    env = shell_env(tmp_path, speedup=20000)
    # ``ferry job approve 3 | ferry job pause 3 | ...`` lists alternatives: each runs on its own.
    lines = [part for line in block_of("Using ferry") if line.startswith("ferry ")
             for part in re.split(r" \| (?=ferry )", line)]
    assert len(lines) >= 18
    ran = [line for line in lines if not line.startswith("ferry serve")]  # serve: the REST API test
    for line in ran:
        result = bash(line, tmp_path, env)
        assert exits_as_documented(line, result), (line, result.returncode, result.stdout, result.stderr)
    assert json.loads((tmp_path / "fleet.json").read_text())["nodes"]
    assert json.loads((tmp_path / "plan.json").read_text())["goal"]["kind"] == "evacuate"
    # The job lines once more on the job ``ferry run plan.json`` stored (id 1, finished by now).
    for line in ran:
        if line.startswith("ferry job show 3"):
            assert bash(line.replace(" 3 ", " 1 "), tmp_path, env).returncode == 0, line
    shown = json.loads(bash("ferry job show 1 --format json", tmp_path, env).stdout)
    assert shown["state"] == "succeeded" and shown["moves"]
