"""From a stored move to the typed request a backend receives (adapters/base.py ``MoveSpec``).

    plan Move --move_options--> MoveRow.options (JSON, written when the job is created)
    step's StepContext.facts --saga--> MoveRow.options (added once, the first value stands)
    MoveRow + job id + Policy --build_spec--> MoveSpec (built again before every step)

The stored options hold what the plan asked for (``target_storage``, readdressing) and the facts
a step learned for the steps after it (``source_running``, adapters/base.py FACTS); what the
engine decides at run time (the lock owner, the move's share of the node's bandwidth budget) is
added here, so a policy change applies to a resumed move too. An unknown stored key is an error,
never dropped: a backend must see every request to honour or refuse it.
"""

from __future__ import annotations

from typing import Any

from adapters.base import MoveSpec
from fleet.plan import Move
from fleet.policy import Policy
from service.store import MoveRow

#: Stored option keys and how each becomes its MoveSpec field.
_STORED = {"target_ct": str, "target_storage": str, "hostname": str, "gateway": str, "backup": bool,
           "archive": str, "fenced": bool, "ha": bool, "fence_command": lambda v: tuple(str(a) for a in v),
           "ips": lambda v: tuple(str(ip) for ip in v), "ports": lambda v: tuple(int(p) for p in v),
           "source_running": bool}


def move_options(move: Move) -> dict[str, Any]:
    """What a plan move asks of the backend beyond where and how, as stored on its MoveRow."""
    options: dict[str, Any] = {"target_storage": move.target_storage} if move.target_storage else {}
    if move.address is not None:  # a new subnet: the address plan's addresses (planners/addresses.py)
        options["ips"] = list(move.address.ips or [move.address.to])
        if move.address.gateway:
            options["gateway"] = move.address.gateway
    if move.restore is not None:  # a restore from a backup (adapters/restore.py)
        options.update(archive=move.restore.archive, fenced=move.restore.fenced, ha=move.restore.ha,
                       fence_command=list(move.restore.fence_command))
    return options


def build_spec(move: MoveRow, job_id: int, policy: Policy | None) -> MoveSpec:
    """The MoveSpec of ``move`` in job ``job_id``: its stored requests, the job as lock owner,
    and the policy's bandwidth cap for one move out of its source node."""
    unknown = sorted(set(move.options or {}) - set(_STORED))
    if unknown:
        raise ValueError(f"move of {move.ct}: unknown stored options {unknown}")
    requests = {key: _STORED[key](value) for key, value in (move.options or {}).items()
                if value is not None}
    cap = policy.move_bandwidth_cap(move.source) if policy else None
    return MoveSpec(move.ct, move.source, move.target, move.method,  # type: ignore[arg-type]
                    owner=f"job-{job_id}", bwlimit_mb_s=cap or None, **requests)
