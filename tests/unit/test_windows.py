"""Maintenance windows as Proxmox calendar events with a duration (service.windows), beside the
original 'DAYS HH:MM-HH:MM' syntax: when they open and close, and how a mistake reads."""

from __future__ import annotations

import datetime as dt

import pytest

from fleet.errors import InputError
from service.schedule import MaintenanceWindows, parse_windows

MONDAY = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return MONDAY + dt.timedelta(days=day, hours=hour, minutes=minute)


@pytest.mark.parametrize(("text", "open_at", "closed_at"), [
    ("sat 01:00 for 4h", [(5, 1), (5, 4, 59)], [(5, 0, 59), (5, 5), (4, 2)]),
    ("mon..fri 22:00 for 4h", [(0, 22), (4, 23), (5, 1, 59)], [(5, 22), (6, 23), (0, 2)]),
    ("sat,sun 0/6:00 for 1h", [(5, 0, 30), (5, 6), (6, 18, 59)], [(5, 1), (6, 7), (4, 0, 30)]),
    ("fri..mon 03:30 for 1h30min", [(4, 3, 30), (0, 4, 59)], [(1, 4), (0, 5)]),
    ("daily + 90m", [(d, 1, 29) for d in range(7)], [(d, 1, 30) for d in range(7)]),
    ("weekly for 2d", [(0, 0), (1, 23, 59)], [(2, 0), (6, 23)]),
    ("Saturday 01..02:00,30 for 20m", [(5, 1, 10), (5, 1, 40), (5, 2, 45)], [(5, 1, 25), (5, 3)]),
    ("Sat 01:00-05:00", [(5, 1), (5, 4, 59)], [(5, 5)]),  # the original syntax still reads the same
])
def test_calendar_windows_open_and_close_when_they_say(text: str, open_at: list, closed_at: list) -> None:
    windows = MaintenanceWindows(parse_windows(text))
    moments = [at(*t) for t in open_at + closed_at]
    assert [windows.is_open(t) for t in moments] == [True] * len(open_at) + [False] * len(closed_at)


def test_a_window_says_how_long_it_stays_open_and_when_it_opens() -> None:
    windows = MaintenanceWindows.from_config(["sat 01:00 for 4h", "mon..fri 22:00 for 2h"])
    assert windows.seconds_left(at(5, 4)) == 3600
    assert windows.seconds_left(at(2, 23, 30)) == 1800
    assert windows.fits(at(5, 1), 4 * 3600) and not windows.fits(at(5, 1), 4 * 3600 + 1)
    assert windows.minutes_until_open(at(5, 6)) == (7 - 5) * 24 * 60 + 22 * 60 - 6 * 60


@pytest.mark.parametrize(("text", "why"), [
    ("sat 01:00", "or a calendar event with a duration"),
    ("sat 01:00 for", "or a calendar event with a duration"),
    ("sat 25:00 for 1h", "'25' is outside hours (0..23)"),
    ("sat 01:61 for 1h", "'61' is outside minutes"),
    ("sat 1h:00 for 1h", "'1h' is not a value of hours"),
    ("sta 01:00 for 1h", "unknown weekday 'sta'"),
    ("monthly for 2h", "names dates"),
    ("*-*-01 01:00 for 1h", "names dates"),
    ("sat 01:00:30 for 1h", "whole minute"),
    ("sat 01:00 for 0m", "more than 0 minutes and at most 7 days"),
    ("sat 01:00 for 8d", "more than 0 minutes and at most 7 days"),
    ("sat 01:00 for four hours", "is not a duration"),
    ("sat 01:00 sun for 1h", "expected [WEEKDAYS] [HH:MM] before the duration"),
    ("01:00 sat for 1h", "'sat' is not a time"),
])
def test_a_mistake_names_the_key_and_the_value(text: str, why: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_windows(text, "schedule.windows[1]")
    line = caught.value.line()
    assert line.startswith(f"schedule.windows[1]={text!r}: ") and why in line, line
