"""Rolling maintenance campaigns: the calendar of draining, patching and restoring nodes one group
at a time, every move fitted into a maintenance window.

    nodes n1..nk, max_out m --groups of m--> for each group, in order:
        drain plan (planners.plan_drain: every other node takes what it can, within its headroom)
          --waves, each lasting its longest move x1.25--> fitted into the next window openings
        maintenance (the hook: a command, or an operator's 'ferry node restore') for `maintenance`
        restore (each container back to its origin, service.operations.nodes.move_home)
          --fitted the same way--> the group is back; the next group starts
    --> Calendar: per group the drain and restore moves with start / end, and the predicted end

Pure apart from its inputs: the same fleet, policy, windows and start give the same calendar. At most
``max_out`` nodes are out at once because a group starts only once the previous one is home.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fleet.errors import InputError
from fleet.model import Inventory
from fleet.plan import Move
from fleet.policy import Policy
from planners import plan_drain
from planners.evacuate import resolve_nodes
from planners.state import FleetState
from service.operations.nodes import move_home, per_wave
from service.operations.planning import current_inventory
from service.operations.requests import MaintenancePlanRequest
from service.runtime import Runtime
from service.schedule import MaintenanceWindows, openings, parse_windows, time_zone
from service.windows import parse_duration
from service.worker import WINDOW_MARGIN

#: How far ahead a calendar looks for windows before it calls a move unfit.
HORIZON_WEEKS = 104


@dataclass(frozen=True)
class TimedMove:
    ct: str
    source: str
    target: str
    predicted_s: float
    start: dt.datetime
    end: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"ct": self.ct, "from": self.source, "to": self.target, "predicted_s": self.predicted_s,
                "start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass
class Phase:
    """A drain or a restore: its moves in the windows they start in."""

    moves: list[TimedMove] = field(default_factory=list)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    #: Moves that fit in no window (longer than any window x1.25): they never start by themselves.
    unfit: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"start": _iso(self.start), "end": _iso(self.end), "moves": [m.to_dict() for m in self.moves],
                "unfit": self.unfit}


@dataclass
class Step:
    nodes: list[str]
    drain: Phase
    restore: Phase
    maintenance_until: dt.datetime | None
    #: Containers the drain found no place for (the node cannot be emptied as is).
    unplaced: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "drain": self.drain.to_dict(), "maintenance_until": _iso(self.maintenance_until),
                "restore": self.restore.to_dict(), "unplaced": self.unplaced}


@dataclass
class Calendar:
    nodes: list[str]
    max_out: int
    start: dt.datetime
    steps: list[Step]

    @property
    def predicted_end(self) -> dt.datetime | None:
        ends = [s.restore.end or s.maintenance_until for s in self.steps]
        return max((e for e in ends if e is not None), default=None)

    @property
    def problems(self) -> list[str]:
        out = []
        for step in self.steps:
            group = ",".join(step.nodes)
            out += [f"{group}: {ct} has no destination" for ct in step.unplaced]
            out += [f"{group}: move of {ct} fits in no window" for ct in step.drain.unfit + step.restore.unfit]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "max_out": self.max_out, "start": self.start.isoformat(),
                "predicted_end": _iso(self.predicted_end), "problems": self.problems,
                "steps": [s.to_dict() for s in self.steps]}


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class WindowCursor:
    """Hands out start times inside the window openings, in order, from a moving cursor."""

    def __init__(self, windows: MaintenanceWindows, start: dt.datetime) -> None:
        self._spans: Iterator[tuple[dt.datetime, dt.datetime]] = openings(windows, start, HORIZON_WEEKS)
        self._span = next(self._spans, None)
        self.now = start
        longest = max((w.length_min for w in windows.windows), default=None)
        self.longest_s = float("inf") if longest is None else longest * 60.0

    def wait_until(self, moment: dt.datetime) -> None:
        self.now = max(self.now, moment)

    def place(self, duration_s: float) -> dt.datetime | None:
        """The first start at or after the cursor where ``duration_s`` ends before its window closes
        (None: no window is long enough); the cursor moves to that work's end."""
        if duration_s > self.longest_s:
            return None
        need = dt.timedelta(seconds=duration_s)
        while self._span is not None:
            opens, closes = self._span
            start = max(self.now, opens)
            if start + need <= closes:
                self.now = start + need
                return start
            self._span = next(self._spans, None)
        return None


def fit_phase(cursor: WindowCursor, moves: list[Move]) -> Phase:
    """Waves one after the other, each lasting its longest move x WINDOW_MARGIN, each starting
    only where it ends before its window closes."""
    phase = Phase()
    waves: dict[int, list[Move]] = {}
    for move in moves:
        waves.setdefault(move.wave, []).append(move)
    for wave in sorted(waves):
        duration = max(m.predicted.duration_s for m in waves[wave]) * WINDOW_MARGIN
        start = cursor.place(duration)
        if start is None:
            phase.unfit += [m.ct for m in waves[wave]]
            continue
        phase.start = phase.start or start
        for m in waves[wave]:
            end = start + dt.timedelta(seconds=m.predicted.duration_s)
            phase.moves.append(TimedMove(m.ct, m.from_node, m.to, m.predicted.duration_s, start, end))
        phase.end = start + dt.timedelta(seconds=duration)
    return phase


def restore_moves(inv: Inventory, drain: list[Move], policy: Policy) -> list[Move]:
    """Each drained container back to where it came from, after the drain's moves."""
    state = FleetState(inv, policy)
    for move in drain:
        state.apply(move.ct, move.to, move.target_storage)
    size = per_wave(policy)
    return [move_home(state, m.ct, m.from_node, i // size) for i, m in enumerate(drain)]


def plan_campaign(inv: Inventory, nodes: list[str], policy: Policy, windows: MaintenanceWindows, *,
                  start: dt.datetime, max_out: int = 1, maintenance_s: float = 3600.0) -> Calendar:
    """The calendar of a rolling maintenance of ``nodes``, ``max_out`` at a time."""
    cursor = WindowCursor(windows, start)
    steps = []
    for i in range(0, len(nodes), max_out):
        group = nodes[i:i + max_out]
        plan = plan_drain(inv, group, policy)
        drain = fit_phase(cursor, plan.moves)
        done = drain.end or cursor.now
        maintenance_until = done + dt.timedelta(seconds=maintenance_s)
        cursor.wait_until(maintenance_until)
        placed = [m for m in plan.moves if m.ct not in drain.unfit]
        restore = fit_phase(cursor, restore_moves(inv, placed, policy))
        steps.append(Step(group, drain, restore, maintenance_until, [u.ct for u in plan.unplaced]))
    return Calendar(list(nodes), max_out, start, steps)


# -- the operation (CLI 'ferry maintenance plan', POST /v1/maintenance/plan) ---------------------
def _start(text: str | None) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError("start", text, "not an ISO 8601 instant such as 2026-12-05T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def campaign_windows(rt: Runtime, request: MaintenancePlanRequest) -> MaintenanceWindows:
    """The request's windows, else the configured ones, in the configured time zone."""
    texts = request.windows or rt.config.schedule.windows
    key = "windows" if request.windows else "schedule.windows"
    return MaintenanceWindows([w for i, text in enumerate(texts) for w in parse_windows(text, f"{key}[{i}]")],
                              time_zone(rt.config.schedule.timezone))


def plan_maintenance(rt: Runtime, request: MaintenancePlanRequest) -> Calendar:
    """The calendar of a rolling maintenance over the live fleet (node states applied)."""
    inv = current_inventory(rt)
    resolve_nodes(inv, request.nodes)
    if len(set(request.nodes)) != len(request.nodes):
        raise InputError("nodes", request.nodes, "a node is named twice")
    windows = campaign_windows(rt, request)
    maintenance_min = parse_duration(request.maintenance, "maintenance", request.maintenance)
    return plan_campaign(inv, request.nodes, rt.policy(), windows, start=_start(request.start),
                         max_out=request.max_out, maintenance_s=maintenance_min * 60.0)
