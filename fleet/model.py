"""The world as a planner sees it: nodes, containers and rules (``contracts/inventory.md``, v1).

Models are plain data. Unknown keys are kept (``extra="allow"``) and ignored, as the contract
demands, so a snapshot written by a newer tool still loads. Every value is untrusted: text fields
refuse control, C1 and bidi characters (:mod:`fleet.text`), ids match whole, addresses parse as IP
addresses, and every figure is finite and bounded by the limits below. Cross-record checks (unique ids, known
nodes, known storages) live in :mod:`fleet.snapshot`, which turns every failure into an
:class:`~fleet.errors.InputError` that names the key and the value.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from fleet.text import check_text

# Every figure has a bound beyond any real node, so that a typo (an extra three zeros) or a hostile
# 1e308 is refused by name instead of overflowing a planner's arithmetic. The limits:
MAX_CPUS = 16_384  #: logical CPUs of one node or container (Linux's NR_CPUS tops out at 8192)
MAX_MEMORY_MB = 64 * 1024 * 1024  #: 64 TiB of RAM, node or container
MAX_DISK_GB = 100_000_000.0  #: 100 PB: one storage (a Ceph pool included) or one container's disk
MAX_RATE_MB_S = 1_000_000.0  #: 1 TB/s: a container's write rate
MAX_NODES = 100_000
MAX_CONTAINERS = 1_000_000
MAX_ITEMS = 4096  #: tags, addresses or storages of one record
MAX_TEXT_CHARS = 253  #: names, tags, kernels, versions: a DNS name's length

# Ids are Proxmox VMIDs / OpenVZ CTIDs (digits), or names for other backends: no spaces, no shell
# metacharacters, so an id can be used in a path component and a lock name. Matched whole (\Z, not
# $, which lets a trailing newline through).
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def _as_text(value: object) -> str:
    """YAML reads ``id: 101`` as an int; the contract's ids are strings. Accept both, nothing else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    return value


def _check_id(value: object) -> str:
    text = _as_text(value)
    if not _ID_RE.match(text):
        raise ValueError("must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return text


def _check_name(value: object) -> str:
    """Names from a cluster are untrusted: no control, C1 or bidi characters, at most 253."""
    return check_text(_as_text(value), MAX_TEXT_CHARS)


def _integral(value: object) -> object:
    """``4096.0`` (a float some exporters write) is the integer 4096; any other value is left to
    strict validation, which refuses strings and booleans where a number belongs."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_MEMORY_MB:
        return int(value)
    return value


def _check_free_text(value: str) -> str:
    return check_text(value, MAX_TEXT_CHARS)


def _check_address(value: str) -> str:
    """An IPv4 / IPv6 address, optionally with a prefix length; kept as written."""
    check_text(value, MAX_TEXT_CHARS)
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError("is not an IP address") from None
    return value


Id = Annotated[str, BeforeValidator(_check_id)]
NodeName = Annotated[str, BeforeValidator(_check_id)]
Name = Annotated[str, BeforeValidator(_check_name)]
#: Free text that is not a name (a kernel release, a version, a timestamp): the same character rule.
Text = Annotated[str, AfterValidator(_check_free_text)]
Address = Annotated[str, AfterValidator(_check_address)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, BeforeValidator(_integral)]
Platform = Literal["proxmox", "openvz"]


def _unset(value: object) -> bool:
    """Extension keys are absent from the JSON when not set, as readers of inventory.md expect."""
    return value is None


class _Record(BaseModel):
    # strict: "12" or true is not a number of CPUs; a snapshot says what it means. The validators
    # are built on first use: a command that reads no snapshot (``ferry jobs``) does not pay for them.
    model_config = ConfigDict(extra="allow", frozen=True, validate_default=True, allow_inf_nan=False,
                              strict=True, defer_build=True)


class Storage(_Record):
    total_gb: float = Field(ge=0, le=MAX_DISK_GB)
    used_gb: float = Field(default=0.0, ge=0, le=MAX_DISK_GB)
    shared: bool = False

    @property
    def free_gb(self) -> float:
        return max(0.0, self.total_gb - self.used_gb)


class Node(_Record):
    name: NodeName
    platform: Platform = "proxmox"
    cpus: Count = Field(ge=1, le=MAX_CPUS)
    memory_mb: Count = Field(ge=1, le=MAX_MEMORY_MB)
    cpu_usage: Fraction = 0.0
    storage: dict[Id, Storage] = Field(default_factory=dict, max_length=MAX_ITEMS)
    online: bool = True
    maintenance: bool = False
    zone: Name | None = None
    kernel: Text | None = None
    version: Text | None = None
    tags: list[Name] = Field(default_factory=list, max_length=MAX_ITEMS)
    #: ferry's lifecycle state of the node (service/nodes.py) when it is not active: cordoned,
    #: draining, maintenance, restoring (extension key; absent when not set).
    state: Text | None = Field(default=None, exclude_if=_unset)
    #: ``True``: the node takes no new containers (an operator's decision; extension key, absent
    #: when not set).
    cordoned: bool | None = Field(default=None, exclude_if=_unset)

    @property
    def receives(self) -> bool:
        """Whether this node may receive containers at all (online, not in maintenance, not cordoned)."""
        return self.online and not self.maintenance and not self.cordoned


class Container(_Record):
    id: Id
    node: NodeName
    name: Name | None = None
    status: Literal["running", "stopped", "paused", "suspended"] = "running"
    cpus: float = Field(default=1, gt=0, le=MAX_CPUS)
    cpu_usage: Fraction = 0.0
    memory_mb: Count = Field(ge=0, le=MAX_MEMORY_MB)
    memory_used_mb: Count = Field(default=0, ge=0, le=MAX_MEMORY_MB)
    disk_gb: float = Field(default=0.0, ge=0, le=MAX_DISK_GB)
    storage: Id | None = None
    ips: list[Address] = Field(default_factory=list, max_length=MAX_ITEMS)
    tags: list[Name] = Field(default_factory=list, max_length=MAX_ITEMS)
    ha: bool = False
    dirty_mb_per_s: float = Field(default=0.0, ge=0, le=MAX_RATE_MB_S)

    @property
    def label(self) -> str:
        return f"{self.id} ({self.name})" if self.name else self.id


class Rules(_Record):
    affinity: list[list[Id]] = Field(default_factory=list, max_length=MAX_CONTAINERS)
    anti_affinity: list[list[Id]] = Field(default_factory=list, max_length=MAX_CONTAINERS)
    pinned: list[Id] = Field(default_factory=list, max_length=MAX_CONTAINERS)
    pin_to: dict[Id, list[NodeName]] = Field(default_factory=dict, max_length=MAX_CONTAINERS)
    ignore: list[Id] = Field(default_factory=list, max_length=MAX_CONTAINERS)
    exclude_nodes: list[NodeName] = Field(default_factory=list, max_length=MAX_NODES)


class Inventory(_Record):
    version: Literal[1] = 1
    taken_at: Text | None = None
    nodes: list[Node] = Field(max_length=MAX_NODES)
    containers: list[Container] = Field(default_factory=list, max_length=MAX_CONTAINERS)
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
