"""A small stand-in for the engine: drive a move through adapters.base.STEPS.

TransientError -> retry (bounded); RefusedError from a live step -> same move as ``restart``;
PermanentError -> rollback and re-raise; any error from cleanup (CleanupPending or not) -> the
move stands, as in the engine, and what remains is in ``Outcome.cleanup_pending``. Returns the
journal and the figures.
"""

from __future__ import annotations

import dataclasses
import time

from adapters.base import (
    STEPS,
    Backend,
    CleanupPending,
    JournalEntry,
    MoveSpec,
    PermanentError,
    RefusedError,
    Step,
    StepContext,
    TransientError,
    run_step,
)


@dataclasses.dataclass
class Outcome:
    spec: MoveSpec
    journal: list[JournalEntry]
    figures: dict[str, float]
    retries: int = 0
    fell_back: bool = False
    checks: list = dataclasses.field(default_factory=list)
    cleanup_pending: str = ""


def drive(backend: Backend, spec: MoveSpec, *, max_retries: int = 5,
          between=None) -> Outcome:
    journal: list[JournalEntry] = []
    out = Outcome(spec, journal, {})
    ctx = StepContext(journal=journal.append, figures=out.figures)
    steps = list(STEPS)
    i = 0
    while i < len(steps):
        step = steps[i]
        if between:
            between(step)
        try:
            result = run_step(backend, step, out.spec, ctx)
            if step is Step.PREFLIGHT:
                out.checks = result
                blocking = [c for c in result if not c.ok and c.blocks == "move"]
                if blocking:
                    raise PermanentError("; ".join(f"{c.name}: {c.detail}" for c in blocking))
                if out.spec.method == "live" and any(not c.ok for c in result):
                    out.spec, out.fell_back = dataclasses.replace(out.spec, method="restart"), True
        except TransientError:
            out.retries += 1
            if out.retries > max_retries:
                backend.rollback(out.spec, ctx)
                raise
            time.sleep(0.2)
            continue
        except CleanupPending as exc:
            out.cleanup_pending = str(exc)
        except RefusedError:
            out.spec, out.fell_back = dataclasses.replace(out.spec, method="restart"), True
            i = steps.index(Step.PRESYNC)
            continue
        except PermanentError as exc:
            if step is not Step.CLEANUP:
                backend.rollback(out.spec, ctx)
                raise
            out.cleanup_pending = str(exc)  # destination verified: the move stands (engine rule)
        i += 1
    return out
