"""The one narrow interface every backend (sim, openvz, proxmox) implements.

The engine (``service/``) drives a move as a saga of steps. For each step it calls the backend
method of the same name; every method must be **idempotent and level-triggered**: it first
observes the real state and does only what is still missing, so that the engine may call it again
after a crash whose outcome it does not know, without ever repeating a destructive action blindly::

    preflight -> prepare -> presync -> cutover -> verify -> cleanup
        |            |          |          |          |
        +------------+----------+----------+----------+--> rollback (compensation)

Invariants every backend keeps, whatever the order of calls:
- never two running copies of one container, never one IP on two running containers
  (``cutover`` stops the source before the destination takes the address);
- never delete the source before ``verify`` has passed (only ``cleanup`` retires it, and only
  after the destination is verified);
- ``rollback`` leaves the source running (again) and removes the half-made destination.

Backends report every remote command and API call through ``StepContext.journal`` and raise
:class:`TransientError` (retry with backoff), :class:`RefusedError` (this method cannot work:
fall back, e.g. live -> dump) or :class:`PermanentError` (roll back; the message says what to do).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from fleet.model import Inventory

Status = Literal["running", "stopped", "absent", "partial", "unknown"]


class Step(StrEnum):
    PREFLIGHT = "preflight"
    PREPARE = "prepare"
    PRESYNC = "presync"
    CUTOVER = "cutover"
    VERIFY = "verify"
    CLEANUP = "cleanup"


STEPS: tuple[Step, ...] = tuple(Step)


class BackendError(Exception):
    """Base of the errors a backend raises; ``str()`` is the operator-facing one-line message."""


class TransientError(BackendError):
    """May succeed if tried again (connection refused, timeout, HTTP 5xx, a lock held briefly)."""


class RefusedError(BackendError):
    """This method cannot work for this move (kernel mismatch, checkpoint refused): fall back."""


class PermanentError(BackendError):
    """Will fail again the same way (no space, bad config); roll back and tell the operator."""


class CleanupPending(BackendError):
    """Cleanup did what is due now; the rest (a retention period, forwarders still needed while
    DNS moves) is due later. The move stands; the engine calls ``cleanup`` again later
    (``ferry cleanup``, and ``ferry serve`` on every poll)."""


class Cancelled(BackendError):
    """The operator cancelled the move while a long step ran (``StepContext.cancelled``)."""


@dataclass(frozen=True)
class MoveSpec:
    """What the engine asks a backend to do. ``target_ct`` is the id on the destination when it
    must differ (OpenVZ CTID taken, Proxmox restore under a free VMID); ``None`` keeps ``ct``."""

    ct: str
    source: str
    target: str
    method: Literal["live", "restart", "dump"] = "restart"
    target_ct: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dest_ct(self) -> str:
        return self.target_ct or self.ct


@dataclass(frozen=True)
class Copy:
    """One observed copy of a container on one node."""

    node: str
    ct: str
    status: Status
    ips: tuple[str, ...] = ()
    checksum: str | None = None
    locked_by: str | None = None


@dataclass(frozen=True)
class MoveState:
    """The real state of a move's two ends, observed (not remembered)."""

    source: Copy
    target: Copy

    @property
    def both_running(self) -> bool:
        return self.source.status == "running" and self.target.status == "running"


@dataclass(frozen=True)
class JournalEntry:
    """One remote command or API call. ``what`` is an argv list or ``METHOD /path``; secrets are
    removed by the backend before it builds the entry."""

    host: str
    what: list[str] | str
    status: int | None
    duration_ms: float
    kind: Literal["command", "api", "event"] = "command"
    detail: Mapping[str, Any] = field(default_factory=dict)


class Journal(Protocol):
    def __call__(self, entry: JournalEntry) -> None: ...


def _ignore_entry(entry: JournalEntry) -> None:
    return None


def _ignore_progress(done: int, total: int) -> None:
    return None


def _never_cancelled() -> bool:
    return False


@dataclass
class StepContext:
    """What a step may use besides the spec: where to journal, how to report progress, and how to
    learn that the operator asked it to stop (long steps poll ``cancelled`` between chunks)."""

    journal: Journal = _ignore_entry
    progress: Callable[[int, int], None] = _ignore_progress
    cancelled: Callable[[], bool] = _never_cancelled
    #: Figures the step measured (bytes copied, downtime_s, ...), read by the engine afterwards.
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One pre-flight check: its name, whether it passed, and how to fix it if not."""

    name: str
    ok: bool
    detail: str = ""
    #: "move": a failure stops the move; "live": it only rules out the live method (fall back).
    blocks: Literal["move", "live"] = "move"


class Backend(abc.ABC):
    """A cluster ferry can read and move containers in."""

    name: str = "backend"

    @abc.abstractmethod
    def discover(self) -> Inventory:
        """The current world as a snapshot (``contracts/inventory.md``)."""

    @abc.abstractmethod
    def observe(self, spec: MoveSpec) -> MoveState:
        """The real state of the move's source and destination copies."""

    @abc.abstractmethod
    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        """Run the checks; raise nothing for failed checks — the engine judges the list."""

    @abc.abstractmethod
    def prepare(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Reserve the destination (lock, create an empty target, lower DNS TTL...)."""

    @abc.abstractmethod
    def presync(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Copy while the source runs (repeat while the delta shrinks). May be a no-op."""

    @abc.abstractmethod
    def cutover(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Stop the source, copy the rest, start the destination with the addresses."""

    @abc.abstractmethod
    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Raise PermanentError unless the destination runs with the source's data and IPs."""

    @abc.abstractmethod
    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Retire the (stopped, verified-copied) source and any forwarding; release locks."""

    @abc.abstractmethod
    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Compensate: the source runs again with its addresses, the destination is removed."""

    def now(self) -> float:
        """Seconds on the world's clock (wall time for real clusters; simulated time for sim)."""
        return time.time()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def run_step(backend: Backend, step: Step, spec: MoveSpec, ctx: StepContext) -> Any:
    """Call the backend method that implements ``step``."""
    return getattr(backend, step.value)(spec, ctx)
