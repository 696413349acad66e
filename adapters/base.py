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

The request is typed: :class:`MoveSpec` declares every field a step may read (no free-form
options), built from the stored move by ``service/movespec.py``. Its :data:`REQUESTS` (readdressing,
target storage, bandwidth cap, held ports, backup) are honoured or refused by each backend in one
place, :attr:`Backend.refuses` / :meth:`Backend.refusals`, and :func:`run_step` refuses a spec
asking for anything its backend cannot do before the step acts. :meth:`Backend.observe` returns an
:class:`Observation` of both ends, read from the cluster, never remembered.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
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
    # A restore from a backup, when the source node is dead (adapters/restore.py): the node is
    # fenced, the archive restored on the destination, the copy started, verified, cleaned up.
    FENCE = "fence"
    RESTORE = "restore"
    START = "start"


#: The steps of a move, in order.
STEPS: tuple[Step, ...] = (Step.PREFLIGHT, Step.PREPARE, Step.PRESYNC, Step.CUTOVER, Step.VERIFY,
                           Step.CLEANUP)
#: The steps of a restore from a backup (a spec with an ``archive``), in order: nothing starts
#: before the dead node is fenced.
RESTORE_STEPS: tuple[Step, ...] = (Step.PREFLIGHT, Step.FENCE, Step.RESTORE, Step.START, Step.VERIFY,
                                   Step.CLEANUP)


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
    """What the engine asks a backend to do, as declared fields (built by ``service/movespec.py``).

    Besides which container goes where by which method, a move may *request* more: the fields in
    :data:`REQUESTS`. A field left at its default requests nothing. Every backend declares which
    requests it honours and why it refuses the others (:attr:`Backend.refuses`), and
    :func:`run_step` refuses a move asking for one it cannot honour before any step acts, so no
    request is ever dropped silently.
    """

    ct: str
    source: str
    target: str
    method: Literal["live", "restart", "dump"] = "restart"
    #: Readdressing: the id on the destination when it must differ (OpenVZ CTID taken, Proxmox
    #: restore under a given VMID); ``None`` keeps ``ct``.
    target_ct: str | None = None
    #: Readdressing: the destination's addresses, replacing the source's (empty: keep them).
    #: OpenVZ: venet IPs. Proxmox: ``ips[i]`` becomes ``net{i}``'s address (CIDR, or a bare
    #: address keeping the interface's prefix length).
    ips: tuple[str, ...] = ()
    #: Readdressing: the default gateway of the destination's subnet for the first address
    #: (``None``: keep the interface's). Proxmox: ``gw`` (``gw6``) of ``net0``; OpenVZ venet
    #: containers route through their node and have none to set.
    gateway: str | None = None
    #: Readdressing: the destination's hostname (``None``: keep it).
    hostname: str | None = None
    #: The storage id the disk lands on (the plan move's ``target_storage``); ``None``: the same id.
    target_storage: str | None = None
    #: The move's share of the source node's bandwidth budget, MB/s (``[policy]``); ``None``: no cap.
    bwlimit_mb_s: float | None = None
    #: Who holds ferry's lock on the container while it moves (``job-<id>`` from the engine).
    owner: str = "ferry"
    #: The TCP ports to hold clients on during the switch (``None``: the ports the CT listens on).
    ports: tuple[int, ...] | None = None
    #: Require a fresh backup archive of the container before it moves.
    backup: bool = False
    #: Restore from this backup archive (Proxmox volid, OpenVZ / sim archive path) instead of
    #: copying from the source, whose node is dead: the spec runs RESTORE_STEPS through
    #: :meth:`Backend.restores`. ``None``: an ordinary move.
    archive: str | None = None
    #: The operator confirmed the source node is fenced (powered off, cannot come back).
    fenced: bool = False
    #: The command (argv) that fences the source node; it must succeed before a restore starts.
    fence_command: tuple[str, ...] = ()
    #: Proxmox HA recovers this container itself (shared storage): ferry follows, never acts.
    ha: bool = False
    #: Whether the source ran before the move changed anything, as a step saw it and the engine
    #: stored it (:attr:`StepContext.facts`); ``None``: not seen yet. A fact, not a request: it
    #: lets a restarted ferry bring the container back (or leave it) in its own power state.
    source_running: bool | None = None

    @property
    def dest_ct(self) -> str:
        return self.target_ct or self.ct

    @property
    def bwlimit_kib(self) -> int | None:
        """The cap in KiB/s (1 MB = 1024 KiB, as ferry counts), the unit of rsync's ``--bwlimit``
        and Proxmox's ``bwlimit``; at least 1, since 0 means "no limit" to both."""
        return max(1, round(self.bwlimit_mb_s * 1024)) if self.bwlimit_mb_s else None

    def requested(self) -> tuple[str, ...]:
        """The :data:`REQUESTS` this spec makes (fields set away from their defaults)."""
        return tuple(name for name in REQUESTS if getattr(self, name) != _DEFAULTS[name])


#: The MoveSpec fields a move may request beyond ct/source/target/method and the lock owner
#: (which every backend takes). Each backend honours or refuses every one (Backend.refuses).
REQUESTS: tuple[str, ...] = ("target_ct", "ips", "gateway", "hostname", "target_storage", "bwlimit_mb_s",
                             "ports", "backup")
_DEFAULTS = {f.name: f.default for f in fields(MoveSpec)}
#: What a step may learn for the steps after it (:attr:`StepContext.facts`), each a MoveSpec field.
FACTS: tuple[str, ...] = ("source_running",)


@dataclass(frozen=True)
class Copy:
    """One observed copy of a container on one node."""

    node: str
    ct: str
    status: Status
    #: The addresses the copy serves (configured addresses of a running copy; none otherwise).
    ips: tuple[str, ...] = ()
    checksum: str | None = None
    locked_by: str | None = None


@dataclass(frozen=True)
class Observation:
    """The real state of a move's two ends, observed (not remembered): the source copy under
    ``spec.ct`` on ``spec.source``, the destination copy under ``spec.dest_ct`` on ``spec.target``.
    The engine journals it when it resumes a step whose outcome it does not know."""

    source: Copy
    target: Copy

    @property
    def both_running(self) -> bool:
        """The state no backend may ever leave behind (one container running twice)."""
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
    #: What the step learned that later steps need even after ferry restarts (:data:`FACTS`):
    #: the engine stores it with the move when the step succeeds, and every later step gets it
    #: back as the MoveSpec field of the same name. The first value stored stands.
    facts: dict[str, bool] = field(default_factory=dict)


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
    #: The :data:`REQUESTS` this backend cannot honour, each with the reason the operator reads
    #: (``"ports: the simulated backend holds no client connections"``); every other request is
    #: honoured. :meth:`refusals` may depend on the move (a method that cannot renumber, a
    #: storage id the backend does not have).
    refuses: Mapping[str, str] = {}

    def refusals(self, spec: MoveSpec) -> dict[str, str]:
        """Which of ``spec``'s requests this backend refuses (for its method, its values), why."""
        return {name: self.refuses[name] for name in spec.requested() if name in self.refuses}

    @abc.abstractmethod
    def discover(self) -> Inventory:
        """The current world as a snapshot (``contracts/inventory.md``)."""

    @abc.abstractmethod
    def observe(self, spec: MoveSpec) -> Observation:
        """The real state of the move's source and destination copies, read from the cluster now
        (status, addresses of a running copy, ferry's lock holder where the backend keeps one)."""

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

    def restores(self) -> Any:
        """The steps of a restore from backups (an ``adapters.restore.RestoreSteps``) on this
        backend; refused where the backend has none."""
        raise RefusedError(f"restore from backups: the {self.name} backend has none")


def steps_for(spec: MoveSpec) -> tuple[Step, ...]:
    """The steps the saga walks for ``spec``: a restore's when it names an archive."""
    return RESTORE_STEPS if spec.archive is not None else STEPS


def actor_for(backend: Backend, spec: MoveSpec) -> Any:
    """What runs ``spec``'s steps, rollback and observe: the backend, or its restore steps."""
    return backend.restores() if spec.archive is not None else backend


def refuse_unhonoured(backend: Backend, spec: MoveSpec) -> None:
    """Raise RefusedError naming every request of ``spec`` that ``backend`` cannot honour."""
    refused = backend.refusals(spec)
    if refused:
        raise RefusedError("; ".join(f"{name}: {refused[name]}" for name in REQUESTS if name in refused))


def run_step(backend: Backend, step: Step, spec: MoveSpec, ctx: StepContext) -> Any:
    """Call the backend method that implements ``step``, after refusing a spec whose requests
    the backend cannot honour (checked at every step: a resumed move may skip preflight)."""
    refuse_unhonoured(backend, spec)
    return getattr(actor_for(backend, spec), step.value)(spec, ctx)
