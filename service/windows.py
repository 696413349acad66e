"""Maintenance windows written as Proxmox VE calendar events with a duration.

    "sat 01:00 for 4h" | "mon..fri 22:00 for 2h30min" | "sat,sun 0/6:00 for 1h" | "daily for 3h"
        --parse_calendar_window--> [Window(days, start, minutes), ...] (service.schedule)

PVE (and Proxmox Backup Server) schedules are calendar events in the style of systemd.time(7):
``[WEEKDAY] [[YEARS-]MONTHS-DAYS] [HOURS:MINUTES[:SECONDS]]``. Weekdays are ``mon`` .. ``sun``,
as a comma list and/or ``..`` ranges; each time field takes a comma list of values, ``..`` ranges,
repetitions ``START/STEP`` and ``*``; a missing weekday means every day, a missing time 00:00;
``hourly``, ``daily`` and ``weekly`` are shorthands. An event names instants; a window also needs how
long it stays open, written after ``for`` (``4h``, ``90min``, ``1h30m``, ``2d``, up to a week).

ferry's windows repeat every week, so the parts of an event that name dates (``*-*-01``,
``monthly``) are refused by name, as is a seconds field other than 0.
"""

from __future__ import annotations

import re

from fleet.errors import InputError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MINUTES_PER_DAY = 24 * 60
MAX_WINDOW_MIN = 7 * _MINUTES_PER_DAY
#: Shorthands PVE accepts that repeat within a week, as the event they stand for.
_SHORTHANDS = {"hourly": "*:00", "daily": "00:00", "weekly": "mon 00:00"}
#: Shorthands that name dates: a weekly window cannot follow them.
_DATED = ("minutely", "monthly", "yearly", "annually", "quarterly", "semiannually", "semi-annually")
_DURATION_PART = re.compile(r"(\d+)\s*(days?|d|hours?|hrs?|h|minutes?|mins?|m)", re.IGNORECASE)
_UNIT_MIN = {"d": _MINUTES_PER_DAY, "h": 60, "m": 1}
_SPLIT = re.compile(r"\s+(?:for\s+|\+\s*)", re.IGNORECASE)


def parse_duration(text: str, key: str, raw: str) -> int:
    """``4h`` / ``2h30min`` / ``90m`` / ``1d`` -> minutes (1 .. one week)."""
    compact = text.strip()
    pos, total = 0, 0
    for match in _DURATION_PART.finditer(compact):
        if compact[pos:match.start()].strip():
            break
        total += int(match[1]) * _UNIT_MIN[match[2][0].lower()]
        pos = match.end()
    if not compact or compact[pos:].strip():
        raise InputError(key, raw, f"{text!r} is not a duration: write it like 4h, 90min or 1h30m")
    if not 0 < total <= MAX_WINDOW_MIN:
        raise InputError(key, raw, "a window lasts more than 0 minutes and at most 7 days")
    return total


def _day(name: str, key: str, raw: str) -> int:
    lowered = name.lower()
    for i, short in enumerate(DAY_NAMES):
        if lowered in (short, _FULL_DAY_NAMES[i]):
            return i
    raise InputError(key, raw, f"unknown weekday {name!r}: use mon, tue, wed, thu, fri, sat, sun")


def parse_weekdays(text: str, key: str, raw: str) -> frozenset[int]:
    """``mon..fri`` / ``sat,sun`` / ``mon,wed..fri`` -> weekday numbers (Monday = 0); ``daily``
    or ``*`` (ferry's older window syntax) for every day."""
    if text.lower() in ("daily", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, dots, last = part.partition("..")
        lo, hi = _day(first, key, raw), _day(last if dots else first, key, raw)
        days.update(range(lo, hi + 1) if lo <= hi else [*range(lo, 7), *range(0, hi + 1)])
    return frozenset(days)


def _field_values(text: str, limit: int, what: str, key: str, raw: str) -> set[int]:
    """One time field (``*``, ``5``, ``1..4``, ``0/15``, ``*/6``, comma lists of those) -> values < limit."""
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        try:
            step = int(step_text) if slash else 1
            if base == "*":
                lo, hi = 0, limit - 1
            else:
                first, dots, last = base.partition("..")
                lo = int(first)
                hi = int(last) if dots else (limit - 1 if slash else lo)
        except ValueError:
            raise InputError(key, raw, f"{part!r} is not a value of {what}: use a number, a..b, a/step or *") from None
        if step < 1 or not 0 <= lo <= hi < limit:
            raise InputError(key, raw, f"{part!r} is outside {what} (0..{limit - 1})")
        values.update(range(lo, hi + 1, step))
    return values


def _parse_time(text: str, key: str, raw: str) -> list[int]:
    """``22:00`` / ``0/6:00`` / ``1..3:30`` / ``*:00`` -> minutes after midnight, sorted."""
    fields = text.split(":")
    if len(fields) not in (2, 3):
        raise InputError(key, raw, f"{text!r} is not a time: use HOURS:MINUTES, e.g. 22:00")
    if len(fields) == 3 and _field_values(fields[2], 60, "seconds", key, raw) != {0}:
        raise InputError(key, raw, "a window opens on a whole minute: leave out the seconds or use :00")
    hours = _field_values(fields[0], 24, "hours", key, raw)
    minutes = _field_values(fields[1], 60, "minutes", key, raw)
    return sorted(h * 60 + m for h in hours for m in minutes)


def parse_calendar_event(text: str, key: str, raw: str) -> tuple[frozenset[int], list[int]]:
    """A PVE calendar event -> (weekdays, start minutes of the day)."""
    event = " ".join(text.lower().split())
    if event in _DATED:
        raise InputError(key, raw, f"{event!r} names dates; ferry's windows repeat weekly (use weekdays)")
    event = _SHORTHANDS.get(event, event)
    days, starts = frozenset(range(7)), [0]
    parts = event.split(" ")
    if len(parts) > 2:
        raise InputError(key, raw, "expected [WEEKDAYS] [HH:MM] before the duration, e.g. 'mon..fri 22:00 for 2h'")
    for i, part in enumerate(parts):
        if re.search(r"\d-|\*-", part):
            raise InputError(key, raw, f"{part!r} names dates; ferry's windows repeat weekly (use weekdays)")
        if ":" in part:
            starts = _parse_time(part, key, raw)
        elif i == 0:
            days = parse_weekdays(part, key, raw)
        else:
            raise InputError(key, raw, f"{part!r} is not a time: use HH:MM after the weekdays")
    return days, starts


def split_event(text: str) -> tuple[str, str] | None:
    """``"sat 01:00 for 4h"`` -> (``"sat 01:00"``, ``"4h"``); None when no duration is given."""
    pieces = _SPLIT.split(text.strip(), maxsplit=1)
    return (pieces[0], pieces[1]) if len(pieces) == 2 else None
