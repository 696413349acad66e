"""The plan format (``contracts/plan.md``, v1): what will move, where, in which order, and why.

A plan is reviewed, approved, then executed exactly as written, so its JSON form is deterministic:
the same snapshot and policy give the same bytes. Keys follow the contract; ``from`` is a Python
keyword, hence the alias. ferry's extension keys (README, "How it is built") are declared
fields too, written only when set, so a plan without them has exactly the contract's keys.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["live", "restart", "dump"]
GoalKind = Literal["evacuate", "drain", "rebalance", "place", "restore"]


def _unset(value: object) -> bool:
    """Extension keys are absent from the JSON when not set, as readers of plan.md expect."""
    return value is None


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Goal(_Part):
    kind: GoalKind
    nodes: list[str] = Field(default_factory=list)


class Predicted(_Part):
    duration_s: float = 0.0
    downtime_s: float = 0.0
    bytes: int = 0


class Readdress(_Part):
    """A new address for a container moved out of its subnet (extension key ``address``)."""

    from_ip: str = Field(alias="from")
    to: str
    network: str
    gateway: str | None = None
    #: Every address the container has on the destination (``to`` first).
    ips: list[str] = Field(default_factory=list)
    #: Predicted seconds clients keep using the old address after the switch: the record's TTL.
    old_address_s: int = 0


class Restore(_Part):
    """How a move restores a container from its backup because its node is dead (extension key
    ``restore`` of a move; its ``method`` stays ``dump``, the second half of which it is)."""

    archive: str
    #: When the archive was taken (backend clock, seconds) and the data lost since (the RPO).
    taken_at: float
    data_age_s: float
    bytes: int = 0
    storage: str = ""
    #: Proxmox HA recovers the container itself (shared storage): ferry follows it.
    ha: bool = False
    #: How the dead node is fenced, set when the job is made: the operator's word, or a command.
    fenced: bool = False
    fence_command: list[str] = Field(default_factory=list)


class Recovery(_Part):
    """A plan that brings a dead node's containers back from their backups (extension key
    ``recovery`` of a plan)."""

    node: str
    #: The largest data age of any restored container: what the evacuation loses at most.
    oldest_data_age_s: float = 0.0
    unrecoverable: list[str] = Field(default_factory=list)


class Move(_Part):
    ct: str
    from_node: str = Field(alias="from")
    to: str
    method: Method = "restart"
    wave: int = 0
    after: list[str] = Field(default_factory=list)
    predicted: Predicted = Field(default_factory=Predicted)
    reason: str = ""
    #: The storage id the disk lands on, as the planner chose it (extension key; absent when
    #: not set: the disk keeps its storage id).
    target_storage: str | None = Field(default=None, exclude_if=_unset)
    #: The container's new address when its destination lies outside its subnet (extension
    #: key; absent when the address stays).
    address: Readdress | None = Field(default=None, exclude_if=_unset)
    #: Restored from a backup, its node being dead (extension key; absent when not set).
    restore: Restore | None = Field(default=None, exclude_if=_unset)


class Unplaced(_Part):
    ct: str
    reason: str


class Usage(_Part):
    memory: float = 0.0
    cpu: float = 0.0
    disk: float = 0.0


class Score(_Part):
    peak_memory: float = 0.0
    spread: float = 0.0
    lower_bound_peak_memory: float = 0.0
    moves: int = 0
    bytes: int = 0
    predicted_makespan_s: float = 0.0


class Plan(_Part):
    version: Literal[1] = 1
    goal: Goal
    inventory_digest: str
    moves: list[Move] = Field(default_factory=list)
    unplaced: list[Unplaced] = Field(default_factory=list)
    before: dict[str, Usage] = Field(default_factory=dict)
    after: dict[str, Usage] = Field(default_factory=dict)
    score: Score = Field(default_factory=Score)
    #: ``True``: the job starts moves only inside ``[schedule] windows`` (extension key; absent
    #: when not set).
    window: bool | None = Field(default=None, exclude_if=_unset)
    #: A recovery from backups of a dead node (extension key; absent when not set).
    recovery: Recovery | None = Field(default=None, exclude_if=_unset)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"
