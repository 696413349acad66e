"""When ferry may act on its own: maintenance windows and the nightly rebalance's cron expression.

    config [schedule] windows = ["Sat 01:00-05:00", "mon..fri 22:00 for 4h"]
        --parse_windows--> Window(s) --MaintenanceWindows.is_open(now)--> worker gate (start a move?)
    config [schedule] rebalance_cron = "0 3 * * *" --cron_trigger--> APScheduler CronTrigger

Pure functions of their inputs and an explicit ``now``: the worker passes its clock in, so tests
use a fixed instant instead of waiting for Saturday night.

A window is ``DAYS HH:MM-HH:MM``. ``DAYS`` is a day name (``Sat``), a range (``Mon-Fri``), a comma
list (``Sat,Sun``) or ``daily``. An end at or before the start runs past midnight into the next day
(``Fri 22:00-02:00`` is open from Friday 22:00 to Saturday 02:00); ``24:00`` ends at midnight.
A window may also be a Proxmox calendar event with a duration, ``sat 01:00 for 4h`` (service.windows).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from fleet.errors import InputError
from service.windows import parse_calendar_event, parse_duration, split_event

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MINUTES_PER_DAY = 24 * 60
_MINUTES_PER_WEEK = 7 * _MINUTES_PER_DAY
_WINDOW = re.compile(r"^\s*(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


@dataclass(frozen=True)
class Window:
    """One weekly maintenance window: the days it opens on, and its start / end in minutes."""

    days: frozenset[int]  # 0 = Monday, as datetime.weekday()
    start_min: int
    end_min: int  # may be <= start_min: the window runs past midnight
    #: How long it stays open, when given as a duration (a calendar event's window may last days).
    minutes: int | None = None

    @property
    def length_min(self) -> int:
        if self.minutes is not None:
            return self.minutes
        return (self.end_min - self.start_min) % _MINUTES_PER_DAY or _MINUTES_PER_DAY

    def intervals(self) -> list[tuple[int, int]]:
        """Open intervals as [start, end) minutes since Monday 00:00 (end may exceed one week)."""
        return sorted((day * _MINUTES_PER_DAY + self.start_min,
                       day * _MINUTES_PER_DAY + self.start_min + self.length_min) for day in self.days)


def _day_index(name: str) -> int | None:
    """``sat`` or ``saturday`` (any case) -> 5; None for anything else."""
    for i, short in enumerate(DAY_NAMES):
        if name in (short, _FULL_DAY_NAMES[i]):
            return i
    return None


def _parse_days(text: str, key: str, raw: str) -> frozenset[int]:
    lowered = text.lower()
    if lowered in ("daily", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in lowered.split(","):
        first, dash, last = part.partition("-")
        lo, hi = _day_index(first), _day_index(last if dash else first)
        if lo is None or hi is None:
            raise InputError(key, raw, f"unknown day {part!r}: use Mon..Sun, a range like Mon-Fri, or daily")
        days.update(range(lo, hi + 1) if lo <= hi else [*range(lo, 7), *range(0, hi + 1)])
    return frozenset(days)


def _parse_clock(text: str, key: str, raw: str, *, end: bool) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise InputError(key, raw, f"{text} is not a time of day (00:00..23:59, or 24:00 as an end)")
    return (hours * 60 + minutes) % _MINUTES_PER_DAY


def parse_window(text: str, key: str = "schedule.windows") -> Window:
    """``"Sat 01:00-05:00"`` -> Window; anything else is an InputError naming ``key`` and ``text``."""
    match = _WINDOW.match(text) if isinstance(text, str) else None
    if match is None:
        raise InputError(key, text, "expected 'DAYS HH:MM-HH:MM', for example 'Sat 01:00-05:00'")
    days = _parse_days(match["days"], key, text)
    start = _parse_clock(match["start"], key, text, end=False)
    end = _parse_clock(match["end"], key, text, end=True)
    if start == end and match["end"] != "24:00":
        raise InputError(key, text, "the window is empty: its start equals its end")
    return Window(days, start, end)


def parse_windows(text: str, key: str = "schedule.windows") -> list[Window]:
    """Either syntax: ``"Sat 01:00-05:00"``, or a Proxmox calendar event with a duration
    (``"sat 01:00 for 4h"``, ``"mon..fri 22:00 for 2h"``; service.windows). One window per start
    time of the event; a mistake is an InputError naming ``key`` and ``text``."""
    if isinstance(text, str) and _WINDOW.match(text):
        return [parse_window(text, key)]
    pieces = split_event(text) if isinstance(text, str) else None
    if pieces is None:
        raise InputError(key, text, "expected 'DAYS HH:MM-HH:MM' (e.g. 'Sat 01:00-05:00') or a calendar "
                         "event with a duration (e.g. 'sat 01:00 for 4h', 'mon..fri 22:00 for 2h')")
    minutes = parse_duration(pieces[1], key, text)
    days, starts = parse_calendar_event(pieces[0], key, text)
    return [Window(days, start, (start + minutes) % _MINUTES_PER_DAY, minutes) for start in starts]


def time_zone(name: str, key: str = "schedule.timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(key, name, "unknown time zone: use an IANA name such as 'UTC' or 'Europe/Berlin'") from None


class MaintenanceWindows:
    """The configured windows in one time zone; an empty list means 'always open'."""

    def __init__(self, windows: list[Window], zone: dt.tzinfo = dt.UTC) -> None:
        self.windows = windows
        self.zone = zone

    @classmethod
    def from_config(cls, texts: list[str], zone_name: str = "UTC") -> MaintenanceWindows:
        return cls([w for i, t in enumerate(texts) for w in parse_windows(t, f"schedule.windows[{i}]")],
                   time_zone(zone_name))

    def _minute_of_week(self, now: dt.datetime) -> float:
        local = now.astimezone(self.zone)
        return local.weekday() * _MINUTES_PER_DAY + local.hour * 60 + local.minute + local.second / 60

    def is_open(self, now: dt.datetime) -> bool:
        if not self.windows:
            return True
        minute = self._minute_of_week(now)
        return any(lo <= m < hi for w in self.windows for lo, hi in w.intervals()
                   for m in (minute, minute + _MINUTES_PER_WEEK))

    def seconds_left(self, now: dt.datetime) -> float:
        """Seconds until the open window closes (0 when closed; infinite with no windows)."""
        if not self.windows:
            return float("inf")
        minute = self._minute_of_week(now)
        left = [hi - m for w in self.windows for lo, hi in w.intervals()
                for m in (minute, minute + _MINUTES_PER_WEEK) if lo <= m < hi]
        return max(left, default=0.0) * 60

    def fits(self, now: dt.datetime, duration_s: float) -> bool:
        """Whether work of ``duration_s`` started now ends before the window closes."""
        return duration_s <= self.seconds_left(now)

    def minutes_until_open(self, now: dt.datetime) -> float:
        """0 when open; else minutes until the next window opens (for messages)."""
        if self.is_open(now):
            return 0.0
        minute = self._minute_of_week(now)
        return min((lo - minute) % _MINUTES_PER_WEEK for w in self.windows for lo, _ in w.intervals())


def openings(windows: MaintenanceWindows, start: dt.datetime, weeks: int = 52) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """The windows' open spans from ``start`` on, in order, overlapping ones merged (at most
    ``weeks`` ahead). No windows: always open, one endless span."""
    if not windows.windows:
        yield start, dt.datetime.max.replace(tzinfo=dt.UTC)
        return
    local = start.astimezone(windows.zone)
    monday = (local - dt.timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    spans = sorted(lo_hi for w in windows.windows for lo_hi in w.intervals())
    current: tuple[dt.datetime, dt.datetime] | None = None
    for week in range(weeks + 1):
        for lo, hi in spans:
            base = monday + dt.timedelta(weeks=week)
            opens, closes = base + dt.timedelta(minutes=lo), base + dt.timedelta(minutes=hi)
            if closes <= local:
                continue
            opens = max(opens, local)
            if current is not None and opens <= current[1]:
                current = (current[0], max(current[1], closes))
                continue
            if current is not None:
                yield current
            current = (opens, closes)
    if current is not None:
        yield current


def cron_trigger(expr: str, zone_name: str = "UTC", key: str = "schedule.rebalance_cron") -> CronTrigger:
    """A 5-field crontab expression -> APScheduler trigger; a bad one is an InputError.

    APScheduler 3 numbers weekdays from Monday = 0 while crontab(5) has Sunday = 0 (see the warning
    on ``CronTrigger.from_crontab`` in apscheduler/triggers/cron/__init__.py), so a numeric
    day-of-week would silently run on the wrong day: day names are required there.
    """
    fields = expr.split() if isinstance(expr, str) else []
    if len(fields) != 5:
        raise InputError(key, expr, f"expected 5 fields 'minute hour day month weekday', got {len(fields)}")
    if re.search(r"(^|[^/])\d", fields[4]):
        raise InputError(key, expr, "name the weekdays (mon..sun): crontab and APScheduler number them differently")
    try:
        return CronTrigger.from_crontab(expr, timezone=time_zone(zone_name))
    except ValueError as exc:
        raise InputError(key, expr, f"not a valid cron expression: {exc}") from None
