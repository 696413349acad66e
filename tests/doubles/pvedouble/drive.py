"""A minimal stand-in for the engine, for end-to-end tests of a backend against the double:
run the steps of adapters.base.STEPS in order, retry TransientError (bounded), call rollback
on PermanentError or failed pre-flight checks, and report a CleanupPending (the move stands, its
cleanup is due again later) as ``"cleanup pending: <why>"``, as the engine does."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.base import (
    STEPS,
    Backend,
    CleanupPending,
    JournalEntry,
    MoveSpec,
    PermanentError,
    Step,
    StepContext,
    TransientError,
    run_step,
)


@dataclass
class Recorder:
    """A journal that keeps every entry."""

    entries: list[JournalEntry] = field(default_factory=list)

    def __call__(self, entry: JournalEntry) -> None:
        self.entries.append(entry)

    def api(self) -> list[JournalEntry]:
        return [e for e in self.entries if e.kind == "api"]


def settings_for(double: Any, env: Mapping[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    """A ``[proxmox]`` table pointing at ``double`` with TLS verified against its CA."""
    table = {"host": double.host, "port": double.port, "token_id": double.token_id,
             "token_secret_env": "FERRY_TEST_PVE_SECRET", "ca_file": str(double.ca_file),
             "poll_interval_s": 0.005, "lock_wait_s": 10.0, "task_timeout_s": 20.0, "ha_timeout_s": 10.0,
             "backup_storage": "nfs-backup", "timeout_s": 5.0}
    table.update(overrides)
    return table


def run_move(backend: Backend, spec: MoveSpec, ctx: StepContext, *, attempts: int = 6,
             backoff_s: float = 0.01) -> str:
    """"done", "cleanup pending: <why>", "refused: ..." (pre-flight failed) or "rolled back: <reason>"."""
    for step in STEPS:
        for attempt in range(attempts):
            try:
                result = run_step(backend, step, spec, ctx)
                if step is Step.PREFLIGHT and not all(check.ok for check in result):
                    return "refused: " + "; ".join(f"{c.name}: {c.detail}" for c in result if not c.ok)
                break
            except TransientError as exc:
                if attempt == attempts - 1:
                    backend.rollback(spec, ctx)
                    return f"rolled back: {exc}"
                time.sleep(backoff_s * 2 ** attempt)
            except CleanupPending as exc:
                return f"cleanup pending: {exc}"
            except PermanentError as exc:
                backend.rollback(spec, ctx)
                return f"rolled back: {exc}"
    return "done"
