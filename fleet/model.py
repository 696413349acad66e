"""The world as a planner sees it: nodes, containers and rules (``contracts/inventory.md``, v1).

Models are plain data. Unknown keys are kept (``extra="allow"``) and ignored, as the contract
demands, so a snapshot written by a newer tool still loads. Cross-record checks (unique ids, known
nodes, known storages) live in :mod:`fleet.snapshot`, which turns every failure into an
:class:`~fleet.errors.InputError` that names the key and the value.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Names from a cluster are untrusted. They never reach a shell unquoted, but we still refuse the
# ones no real cluster produces: control characters, and lengths no tool accepts.
_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,253}$")
# Ids are Proxmox VMIDs / OpenVZ CTIDs (digits), or names for other backends: no spaces, no shell
# metacharacters, so an id can be used in a path component and a lock name.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _as_text(value: object) -> object:
    """YAML reads ``id: 101`` as an int; the contract's ids are strings. Accept both."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError("must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return value


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError("must be 1-253 printable characters")
    return value


Id = Annotated[str, BeforeValidator(_as_text), BeforeValidator(_check_id)]
NodeName = Annotated[str, BeforeValidator(_as_text), BeforeValidator(_check_id)]
Name = Annotated[str, BeforeValidator(_as_text), BeforeValidator(_check_name)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Platform = Literal["proxmox", "openvz"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, validate_default=True)


class Storage(_Record):
    total_gb: float = Field(ge=0)
    used_gb: float = Field(default=0.0, ge=0)
    shared: bool = False

    @property
    def free_gb(self) -> float:
        return max(0.0, self.total_gb - self.used_gb)


class Node(_Record):
    name: NodeName
    platform: Platform = "proxmox"
    cpus: int = Field(ge=1)
    memory_mb: int = Field(ge=1)
    cpu_usage: Fraction = 0.0
    storage: dict[Id, Storage] = Field(default_factory=dict)
    online: bool = True
    maintenance: bool = False
    zone: Name | None = None
    kernel: str | None = None
    version: str | None = None
    tags: list[Name] = Field(default_factory=list)

    @property
    def receives(self) -> bool:
        """Whether this node may receive containers at all (online and not in maintenance)."""
        return self.online and not self.maintenance


class Container(_Record):
    id: Id
    node: NodeName
    name: Name | None = None
    status: Literal["running", "stopped", "paused", "suspended"] = "running"
    cpus: float = Field(default=1, gt=0)
    cpu_usage: Fraction = 0.0
    memory_mb: int = Field(ge=0)
    memory_used_mb: int = Field(default=0, ge=0)
    disk_gb: float = Field(default=0.0, ge=0)
    storage: Id | None = None
    ips: list[str] = Field(default_factory=list)
    tags: list[Name] = Field(default_factory=list)
    ha: bool = False
    dirty_mb_per_s: float = Field(default=0.0, ge=0)

    @property
    def label(self) -> str:
        return f"{self.id} ({self.name})" if self.name else self.id


class Rules(_Record):
    affinity: list[list[Id]] = Field(default_factory=list)
    anti_affinity: list[list[Id]] = Field(default_factory=list)
    pinned: list[Id] = Field(default_factory=list)
    pin_to: dict[Id, list[NodeName]] = Field(default_factory=dict)
    ignore: list[Id] = Field(default_factory=list)
    exclude_nodes: list[NodeName] = Field(default_factory=list)


class Inventory(_Record):
    version: Literal[1] = 1
    taken_at: str | None = None
    nodes: list[Node]
    containers: list[Container] = Field(default_factory=list)
    rules: Rules = Field(default_factory=Rules)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def container(self, ct: str) -> Container:
        for container in self.containers:
            if container.id == ct:
                return container
        raise KeyError(ct)

    def on_node(self, name: str) -> list[Container]:
        return [c for c in self.containers if c.node == name]
