"""What reading the job store needs without SQLAlchemy: the clock rows are stamped with, the
newest schema revision, and who holds a job's lease.

service.store (the ORM) and service.jobs use these; so does service.operations.listing, which
reads a SQLite store with the standard library for ``ferry jobs`` (SQLAlchemy's import alone costs
that command more than all its other work).
"""

from __future__ import annotations

import datetime as dt
import re
import socket
from pathlib import Path
from typing import Protocol

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION_LINE = re.compile(r"""^(down_revision|revision)\s*(?::[^=]*)?=\s*(None|['"]\w+['"])\s*$""", re.M)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def head_revision() -> str | None:
    """The one revision no migration file names as its ``down_revision``, read from the files'
    plain ``revision = '…'`` lines; None when that is not clear-cut (a merge, an unusual file),
    and then Alembic decides."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found:
            continue
        if "down_revision" not in found:
            return None
        revisions.add(found["revision"].strip("'\""))
        parents.add(found["down_revision"].strip("'\""))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


class Leased(Protocol):
    owner: str | None
    lease_until: dt.datetime | None


def _process_alive(pid: int) -> bool:
    """A zombie counts as dead (``kill -0`` would call it alive)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def lease_holder(job: Leased) -> str | None:
    """The instance that is running ``job`` now, or None when nobody is (lease expired, or the
    owner was a process on this host that is gone)."""
    if not job.owner or job.lease_until is None or job.lease_until < utcnow():
        return None
    host, _, pid = job.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _process_alive(int(pid)):
        return None
    return job.owner
