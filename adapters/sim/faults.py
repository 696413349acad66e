"""Fault injection in the simulated fleet: which fault fires at a step, and the error it raises.

    world["faults"]: [{kind, step, ct?, method?, target?, remaining?}]  (each fires ``remaining``
        times, counted in the world file, so across processes)
    world["fault_rate"]: a seeded chance of a transient fault at prepare, presync-copy, verify
        and cleanup (the draws are counted in the world too: a re-run draws anew)
    take_fault(world, spec, step) --kind--> fault_error(kind, spec, step) --> raised by the step

The errors are those a real backend raises for the same trouble (transient: the engine retries;
permanent: it rolls back; refused: it falls back to another method).
"""

from __future__ import annotations

import random
from typing import Any

from adapters.base import MoveSpec, PermanentError, RefusedError, TransientError

#: Steps at which ``fault_rate`` may fire a transient fault.
_RANDOM_STEPS = ("prepare", "presync-copy", "verify", "cleanup")


def take_fault(world: dict[str, Any], spec: MoveSpec, step: str) -> str | None:
    """The kind of the fault scheduled for ``step`` of this move, counted as fired; else None."""
    for fault in world.get("faults", []):
        if fault.get("remaining", 1) <= 0 or fault.get("step") != step:
            continue
        if fault.get("ct") not in (None, spec.ct):
            continue
        if fault.get("method") not in (None, spec.method) or fault.get("target") not in (None, spec.target):
            continue
        fault["remaining"] = fault.get("remaining", 1) - 1
        return fault["kind"]
    rate = float(world.get("fault_rate", 0.0))
    if rate > 0 and step in _RANDOM_STEPS:
        draws = world.setdefault("fault_draws", {})
        key = f"{spec.ct}:{step}"
        draws[key] = draws.get(key, 0) + 1
        if random.Random(f"{world['seed']}:{key}:{draws[key]}").random() < rate:
            return "transient"
    return None


def fault_error(kind: str, spec: MoveSpec, step: str) -> Exception:
    """The error a fault of ``kind`` at ``step`` raises, worded as the real trouble would be."""
    messages = {
        "transient": (TransientError, f"connection to {spec.target} reset during {step}"),
        "fail": (PermanentError, f"{step} of {spec.ct} failed on {spec.target}"),
        "refuse_live": (RefusedError, f"live move of {spec.ct} refused: checkpoint failed"),
        "dest_full": (PermanentError, f"{spec.target}: no space left on device while copying {spec.ct}"),
        "link_drop": (TransientError, f"link {spec.source}->{spec.target} dropped while copying"),
        "start_fails": (PermanentError, f"{spec.ct} failed to start on {spec.target}"),
        "unreachable": (TransientError, f"{spec.source} unreachable (no route to host)"),
    }
    error, message = messages.get(kind, (PermanentError, f"simulated {kind} during {step}"))
    return error(message)
