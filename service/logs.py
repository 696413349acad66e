"""Logging for ``ferry serve``: one line per event on stderr, for journald or a log shipper.

Every line carries a UTC ISO-8601 timestamp, the level and the logger. Plain text by default
(journald adds its own metadata and reads plain lines best); ``--log-format json`` writes one JSON
object per line with ``ts``, ``level``, ``logger``, ``msg`` and, when the event concerns them, the
``job``, ``move``, ``ct`` and ``state`` it is about. uvicorn's access and error logs go through
the same handler, so the service's stderr has one format.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import sys
from enum import StrEnum
from typing import Any

from fleet.text import escape_unsafe

# Without configure_logging (every command but ``ferry serve``) ferry's records go nowhere:
# the CLI reports through its output and exit status, not through logging's last-resort stderr.
logging.getLogger("ferry").addHandler(logging.NullHandler())

#: The fields an event may carry (``log.info(..., extra=fields(job=..., ct=...))``).
EVENT_FIELDS = ("job", "move", "ct", "state")


class LogFormat(StrEnum):
    plain = "plain"
    json = "json"


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the event's job / move / ct / state, without the empty ones."""
    return {key: value for key, value in values.items() if key in EVENT_FIELDS and value is not None}


@functools.cache
def _state_levels() -> dict[str, int]:
    """States that deserve attention: a failure is an error, an undone or cancelled move a warning
    (built on first use: the lifecycle is not needed by a CLI start that only reads this module)."""
    from service.lifecycle import JobState, MoveState

    return {JobState.FAILED: logging.ERROR, MoveState.FAILED: logging.ERROR,
            JobState.ROLLED_BACK: logging.WARNING, JobState.CANCELLED: logging.WARNING,
            MoveState.ROLLING_BACK: logging.WARNING, MoveState.ROLLED_BACK: logging.WARNING,
            MoveState.CANCELLED: logging.WARNING}


def log_transition(log: logging.Logger, what: str, old: str | None, new: str, reason: str | None = None,
                   **event: Any) -> None:
    """Log one job or move state change, at the level its new state deserves; a state that needs
    attention (failed, rolled back, cancelled) carries its ``reason``."""
    level = _state_levels().get(str(new), logging.INFO)
    why = f": {reason}" if reason and level > logging.INFO else ""
    log.log(level, "%s: %s -> %s%s", what, old, new, why, extra=fields(state=str(new), **event))


def _timestamp(record: logging.LogRecord) -> str:
    when = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: getattr(record, key) for key in EVENT_FIELDS if getattr(record, key, None) is not None}


def _message(record: logging.LogRecord) -> str:
    """The message on one line: messages quote backends and containers, which are untrusted."""
    text = record.getMessage()
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return escape_unsafe(text.replace("\r", "\\r").replace("\n", "\\n"))


class PlainFormatter(logging.Formatter):
    """``2026-11-21T02:00:00.000Z INFO ferry.jobs job 3: approved -> running job=3 state=running``."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{key}={escape_unsafe(str(value))}" for key, value in _event_fields(record).items())
        line = f"{_timestamp(record)} {record.levelname} {record.name} {_message(record)}"
        return f"{line} {extra}" if extra else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        event = {"ts": _timestamp(record), "level": record.levelname, "logger": record.name,
                 "msg": _message(record), **_event_fields(record)}
        return json.dumps(event, default=str)


#: Libraries that log routine work at INFO (the scheduler every poll): only their warnings.
_CHATTY = ("apscheduler", "alembic.runtime.plugins")


def configure_logging(fmt: LogFormat = LogFormat.plain, level: int = logging.INFO) -> None:
    """Send every logger (ferry's and uvicorn's) to stderr in ``fmt``, replacing other handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt is LogFormat.json else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
