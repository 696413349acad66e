"""What a ``ferry`` command's exit status means, and the one line that says what to do next.

Scripts and schedulers read the status, people read the line: a job that did not succeed is never
reported as success, and an unexpected error keeps its traceback in a file instead of the terminal.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Protocol

import typer
from rich.console import Console

from fleet.text import escape_unsafe


class ExitCode(IntEnum):
    SUCCEEDED = 0  # the command did what was asked (a job it ran succeeded)
    ERROR = 1  # unexpected error, or the backend refused / could not be reached
    USER_MISTAKE = 2  # a wrong argument, option, file or config value; nothing changed
    JOB_FAILED = 3  # the job ended failed or rolled back
    JOB_CANCELLED = 4  # the job ended cancelled
    JOB_HELD = 5  # the job is paused, or waits (e.g. for a maintenance window)


EXIT_HELP = ("Exit codes: 0 succeeded; 1 unexpected error or backend failure; 2 user mistake "
             "(nothing changed); 3 job failed or rolled back; 4 job cancelled; 5 job paused or waiting.")



class EndedJob(Protocol):
    """What an exit code is decided from: a job's summary after a run, or its detail when watched."""

    job_id: int
    state: str
    messages: list[str]


def _ended_code(state: str) -> ExitCode:
    """The code of a job's state (imported here: the lifecycle brings the backends' step table,
    which a CLI start that never runs a job need not load)."""
    from service.lifecycle import JobState

    return {JobState.SUCCEEDED: ExitCode.SUCCEEDED, JobState.FAILED: ExitCode.JOB_FAILED,
            JobState.ROLLED_BACK: ExitCode.JOB_FAILED, JobState.CANCELLED: ExitCode.JOB_CANCELLED,
            }.get(state, ExitCode.JOB_HELD)


def job_exit(summary: EndedJob) -> tuple[ExitCode, str]:
    """The exit code for a job left in ``summary.state`` and the line telling what to do next."""
    from service.lifecycle import JobState

    job, state = summary.job_id, str(summary.state)
    code = _ended_code(state)
    first = first_line(summary.messages[0]) if summary.messages else ""
    if code is ExitCode.JOB_FAILED:
        reason = f": {first}" if first else ""
        return code, f"ferry: job {job} ended {state}{reason}; see 'ferry job show {job}'"
    if code is ExitCode.JOB_CANCELLED:
        return code, f"ferry: job {job} ended cancelled; see 'ferry job show {job}'"
    if state == JobState.PAUSED:
        return code, f"ferry: job {job} is paused; resume it with 'ferry job resume {job}'"
    return code, (f"ferry: job {job} has not finished ({state}): it waits, e.g. for a maintenance window; "
                  f"'ferry serve' continues it; see 'ferry job show {job}'")


def first_line(text: str) -> str:
    """The first line of an untrusted message, with control and bidi characters escaped."""
    return escape_unsafe((text.splitlines() or [""])[0])


def exit_for_jobs(err: Console, summaries: Sequence[EndedJob]) -> None:
    """Say what to do next for every job that did not succeed, and exit with the gravest code
    (failed before cancelled before held); return only when all succeeded."""
    codes = []
    for summary in summaries:
        code, line = job_exit(summary)
        if code is not ExitCode.SUCCEEDED:
            err.print(line, markup=False, highlight=False, soft_wrap=True)
            codes.append(code)
    if codes:
        raise typer.Exit(min(codes))


def save_trace(state_dir: Path | None) -> str:
    """Write the current exception's traceback to ``STATE_DIR/logs/`` (0600), or to a temp file
    when that is impossible (no config yet, read-only state directory); return its path."""
    text = traceback.format_exc()
    name = f"trace-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.txt"
    if state_dir is not None:
        try:
            logs = state_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            path = logs / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            return str(path)
        except OSError:
            pass
    fd, temp = tempfile.mkstemp(prefix="ferry-trace-", suffix=".txt")  # mkstemp: mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return temp
