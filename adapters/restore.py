"""Bringing containers back from their backups when their node is dead.

    list_backups(node) --> every usable archive of the node's containers (Backup)
    per container, the saga walks adapters.base.RESTORE_STEPS on these methods:
        preflight (archive readable, destination receives) -> fence (the dead node can never come
        back holding the addresses) -> restore (the archive onto the destination, stopped)
        -> start -> verify -> cleanup (once the dead node is back: its stale copy is kept
        stopped, not started on boot, marked, never deleted; until then: CleanupPending)
    rollback removes the restored copy (the dead node's copy is left alone)

Each backend (sim, proxmox, openvz) implements these in its own ``backups.py``; fencing is the
same everywhere and lives here: the operator's word (``--node-is-fenced``) or a configured
command (an IPMI / Redfish call, a PDU) that must exit 0. Both are journaled. Every step observes
before it acts, as every move step does (adapters/base.py), so a restore resumes after a crash.
"""

from __future__ import annotations

import abc
import subprocess
import time
from dataclasses import dataclass

from adapters.base import (
    Check,
    JournalEntry,
    MoveSpec,
    Observation,
    PermanentError,
    StepContext,
    TransientError,
)
from fleet.model import Container

#: Seconds a fence command may take before it counts as failed (and is tried again).
FENCE_TIMEOUT_S = 120.0
#: The mark a stale copy carries once ferry found it on its returned node.
STALE_MARK = "ferry-stale"


@dataclass(frozen=True)
class Backup:
    """One backup archive of one container, as its storage lists it."""

    ct: str
    #: Where it is: a Proxmox volid (``storage:backup/vzdump-lxc-101-….tar.zst``) or a path.
    archive: str
    #: When it was taken, seconds since the epoch (the data newer than this is lost).
    taken_at: float
    bytes: int
    storage: str = ""


@dataclass(frozen=True)
class StaleCopy:
    """A copy left on a node that came back, of a container ferry restored elsewhere."""

    node: str
    ct: str
    #: What ferry found and did: "stopped", "kept stopped", "onboot disabled", ...
    actions: tuple[str, ...]


def newest_backups(backups: list[Backup]) -> dict[str, Backup]:
    """The newest archive of each container (ties: the larger archive, then its name)."""
    newest: dict[str, Backup] = {}
    for b in sorted(backups, key=lambda b: (b.taken_at, b.bytes, b.archive)):
        newest[b.ct] = b
    return newest


class RestoreSteps(abc.ABC):
    """A backend's restore steps (adapters.base.RESTORE_STEPS) and backup listing."""

    @abc.abstractmethod
    def list_backups(self, node: str, cts: list[str]) -> list[Backup]:
        """Every usable backup archive of ``cts`` (the containers of the dead ``node``)."""

    def lost_containers(self, node: str, known: set[str]) -> list[Container]:
        """Containers of the dead ``node`` the inventory cannot show (ids not in ``known``): where
        a dead node's guests stay listed (Proxmox: the cluster knows them) there are none; OpenVZ
        reads them from the node's archives."""
        return []

    def path_refusal(self, source: str, target: str) -> str | None:
        """Why a backup of dead ``source``'s containers cannot be restored on ``target`` (a
        mixed fleet's clusters without a path between them); None: it can."""
        return None

    @abc.abstractmethod
    def observe(self, spec: MoveSpec) -> Observation:
        """The dead node's copy (``unknown`` while it is down) and the restored copy."""

    @abc.abstractmethod
    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        """The archive is there and the destination can take the container."""

    @abc.abstractmethod
    def restore(self, spec: MoveSpec, ctx: StepContext) -> None:
        """The archive restored onto ``spec.target``, stopped (done already: nothing)."""

    @abc.abstractmethod
    def start(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Start the restored copy (called only after ``fence`` succeeded)."""

    @abc.abstractmethod
    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Raise PermanentError unless the restored copy runs with the archive's data."""

    @abc.abstractmethod
    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        """The dead node back: keep its stale copy stopped, onboot off, marked; never delete it.
        Still down: raise CleanupPending (the engine calls again later)."""

    @abc.abstractmethod
    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Remove the restored copy (stop it first); the dead node's copy is left alone."""

    def fence(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Make sure the dead node cannot come back holding the addresses before anything starts:
        the configured fence command must exit 0, or the operator must have confirmed it."""
        if spec.fence_command:
            run_fence_command(spec, ctx)
        elif spec.fenced:
            ctx.journal(JournalEntry("ferry", f"node {spec.source} fenced: confirmed by the operator "
                                     "(--node-is-fenced)", 0, 0.0, kind="event"))
        else:
            raise PermanentError(f"node {spec.source} is not fenced: confirm it with --node-is-fenced "
                                 "or configure [recovery] fence_command; nothing was started")


def run_fence_command(spec: MoveSpec, ctx: StepContext) -> None:
    """Run the fence command (argv, ``{node}`` replaced by the dead node's name) on this host."""
    argv = [part.replace("{node}", spec.source) for part in spec.fence_command]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=FENCE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        ctx.journal(JournalEntry("localhost", argv, None, (time.monotonic() - started) * 1000))
        raise TransientError(f"fence command for {spec.source} timed out after {FENCE_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        ctx.journal(JournalEntry("localhost", argv, None, 0.0))
        raise PermanentError(f"fence command for {spec.source} cannot run: {exc}") from None
    ctx.journal(JournalEntry("localhost", argv, done.returncode, (time.monotonic() - started) * 1000,
                             detail={"stderr": done.stderr[-500:]}))
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise PermanentError(f"fence command for {spec.source} failed ({why}); nothing was started")
