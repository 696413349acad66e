"""The invariants of adapters/base.py, checked against the world itself (never the backend's view).

    saga --step--> WatchedBackend --before/after--> InvariantMonitor.boundary() --> World.look()
                                                      watcher thread (while a step runs) --^

A :class:`World` is how a test looks at one backend's world from outside ferry: the sim world file,
the Proxmox double's records, the lab nodes' files and process table. The monitor records every
violation with the moment it was seen; tests assert that the list stays empty.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from adapters.base import MoveSpec
from tests.integration.conformance.harness import AfterHook, Hook, MoveOrder, StepHooks

#: The invariants, as the report and the test names quote them.
INVARIANTS = (
    "one running copy: never two running copies of the moved container",
    "one holder per IP: never one IP on two running containers",
    "source kept until verified: the source's data is not destroyed before verify passed",
    "rollback restores: after a rollback the source runs and the destination is gone",
    "idempotent steps: a step called twice, or resumed after a crash, repeats no destructive action",
)


@dataclass(frozen=True)
class Seen:
    """One copy of a container as the world shows it."""

    node: str
    ct: str
    running: bool
    ips: tuple[str, ...] = ()


class World(Protocol):
    """A backend's world seen from outside ferry."""

    def copies(self, order: MoveOrder) -> list[Seen]:
        """Every copy of the moved container: the source's CT, and the destination's CT."""

    def running_ips(self) -> list[tuple[str, str]]:
        """(ip, "node/ct") for every address a running container holds, anywhere."""

    def source_data(self, order: MoveOrder) -> bool:
        """Whether the container's data still exists where it was (or moved, never destroyed)."""


@dataclass
class InvariantMonitor:
    """Checks the invariants at every step boundary and, every ``interval_s``, while steps run."""

    world: World
    order: MoveOrder
    interval_s: float | None = None
    violations: list[str] = field(default_factory=list)
    verified: bool = False
    checks: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def look(self, when: str) -> None:
        self.checks += 1
        running = [c for c in self.world.copies(self.order) if c.running]
        if len(running) > 1:
            self.violations.append(f"{when}: {len(running)} running copies {running}")
        holders = Counter(ip for ip, _ in self.world.running_ips())
        for ip, count in holders.items():
            if count > 1:
                self.violations.append(f"{when}: {ip} held by {count} running containers")
        # The world first, then the flag: verify passing sets it before cleanup may remove the
        # source, so a look that began before verify ended but read the world after cleanup
        # started sees the flag set, not a false "gone before verify".
        gone = not self.world.source_data(self.order)
        if gone and not self.verified:
            self.violations.append(f"{when}: source data of {self.order.ct} gone before verify passed")

    def _before(self, step: str, spec: MoveSpec) -> None:
        self.look(f"before {step}")

    def _after(self, step: str, spec: MoveSpec, ok: bool) -> None:
        self.look(f"after {step}{'' if ok else ' (failed)'}")
        if step == "verify" and ok:
            self.verified = True

    def hooks(self, before: Hook | None = None, after: AfterHook | None = None, **kw: object) -> StepHooks:
        """Step hooks that look at every boundary, then call ``before``/``after`` (a test's fault
        or check); ``kw`` sets the other StepHooks fields."""
        def on_before(step: str, spec: MoveSpec) -> None:
            self._before(step, spec)
            if before:
                before(step, spec)

        def on_after(step: str, spec: MoveSpec, ok: bool) -> None:
            self._after(step, spec, ok)
            if after:
                after(step, spec, ok)

        return StepHooks(before=on_before, after=on_after, **kw)  # type: ignore[arg-type]

    def __enter__(self) -> InvariantMonitor:
        if self.interval_s:
            threading.Thread(target=self._watch, daemon=True, name="invariant-watch").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _watch(self) -> None:
        assert self.interval_s
        while not self._stop.wait(self.interval_s):
            try:
                self.look("while a step ran")
            except (OSError, ValueError, KeyError, RuntimeError):  # a file replaced under us
                continue


def only_copy(world: World, order: MoveOrder) -> Seen | None:
    """The single running copy (None if none runs)."""
    running = [c for c in world.copies(order) if c.running]
    assert len(running) <= 1, running
    return running[0] if running else None
