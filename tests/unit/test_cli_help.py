"""Every command's ``--help`` reads as a man page: values named for what they are (NODE, MiB, GiB,
SECONDS, FILE), never by Python's or click's type (TEXT, INTEGER, FLOAT, PATH, ``<int>``,
``<bool>``), within 80 columns; and sizes in MiB / GiB, never a bare MB / GB.
"""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from service import cli

TYPE_WORDS = re.compile(r"\b(TEXT|INTEGER|FLOAT|PATH|BOOLEAN)\b|<(str|int|float|bool|path|text|list\[[^>]*\])>")
#: MB/s is a rate (and the unit of every link speed); a size in an option is MiB or GiB.
DECIMAL_SIZES = re.compile(r"\b(MB|GB|TB)\b(?!/s)")


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group of the CLI, as the words that reach it (the root as ``()``)."""
    paths: list[tuple[str, ...]] = []
    pending: list[tuple[tuple[str, ...], object]] = [((), cli.command_tree())]
    while pending:
        path, command = pending.pop()
        paths.append(path)
        pending.extend(((*path, name), sub) for name, sub in getattr(command, "commands", {}).items())
    return sorted(paths)


def help_text(path: tuple[str, ...]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.command_tree()([*path, "--help"], prog_name="ferry", standalone_mode=False)
    return out.getvalue()


def test_the_walk_sees_every_command() -> None:
    paths = command_paths()
    assert {(), ("plan", "place"), ("job", "show"), ("user", "add"), ("serve",), ("node", "drain")} <= set(paths)
    assert len(paths) > 25


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "ferry")
def test_help_names_no_python_type_and_fits_80_columns(path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = help_text(path)
    assert "Usage:" in text
    assert TYPE_WORDS.findall(text) == [], text
    assert DECIMAL_SIZES.findall(text) == [], text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_units_of_plan_place_are_said() -> None:
    text = help_text(("plan", "place"))
    assert re.search(r"--memory\s+MiB", text) and re.search(r"--disk\s+GiB", text), text


def test_the_check_would_see_a_python_type() -> None:
    """A command declared without a metavar shows its type, and the pattern catches it."""
    assert TYPE_WORDS.findall("│ --limit   <int>  newest jobs") and TYPE_WORDS.findall("--name TEXT")
