"""The one error type every user mistake becomes.

A user mistake (a malformed snapshot, an unknown node, a bad config value) must reach the operator
as one line that names the key and the bad value, and end the command with exit status 2. Every
layer raises :class:`InputError`; only the CLI turns it into text and an exit status.
"""

from __future__ import annotations

from typing import Any

#: Values longer than this are cut in messages, so that a hostile 1 MB "name" stays one line.
_MAX_VALUE_CHARS = 80


def show_value(value: Any) -> str:
    """Render a user-supplied value for a one-line message: repr, single line, bounded length."""
    text = repr(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 1] + "…"
    return text


class InputError(Exception):
    """A user-supplied value is wrong. ``key`` says where, ``value`` what, ``why`` what is wrong."""

    def __init__(self, key: str, value: Any, why: str, *, source: str | None = None) -> None:
        self.key = key
        self.value = value
        self.why = why
        self.source = source
        super().__init__(self.line())

    def line(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.key}={show_value(self.value)}: {self.why}"
