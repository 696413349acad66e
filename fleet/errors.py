"""The one error type every user mistake becomes.

A user mistake (a malformed snapshot, an unknown node, a bad config value) must reach the operator
as one line that names the key and the bad value, and end the command with exit status 2. Every
layer raises :class:`InputError`; only the CLI turns it into text and an exit status.

The line is safe to print anywhere: the key, the value and the source are escaped (a hostile key
or file name cannot steer a terminal), and the value of a key whose name says it holds a secret,
token or password is never shown, even when it is the wrong key: a secret pasted into the wrong
line of a config must not end up in a terminal's scrollback or a CI log.
"""

from __future__ import annotations

import re
from typing import Any

from fleet.text import escape_unsafe

#: Values longer than this are cut in messages, so that a hostile 1 MB "name" stays one line.
_MAX_VALUE_CHARS = 80


#: Keys whose values are never echoed: ``api.token``, ``proxmox.token_secret``, ``db_password``...
_SECRET_KEY_RE = re.compile(r"secret|token|passw|credential|api_?key|private", re.IGNORECASE)
HIDDEN = "(value hidden)"


class _Missing:
    """The value of a key that was not given at all (not even null): messages show no value."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def names_a_secret(key: str) -> bool:
    """Whether ``key`` says its value is a secret (then no message shows the value)."""
    return bool(_SECRET_KEY_RE.search(key))


def _bounded(text: str) -> str:
    text = escape_unsafe(text)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 1] + "…"
    return text


def show_value(value: Any) -> str:
    """Render a user-supplied value for a one-line message: repr, single line, bounded length,
    no character that could steer a terminal."""
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails (a huge int beyond Python's digit limit)  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return _bounded(text)


class InputError(Exception):
    """A user-supplied value is wrong. ``key`` says where, ``value`` what, ``why`` what is wrong."""

    def __init__(self, key: str, value: Any, why: str, *, source: str | None = None) -> None:
        self.key = key
        self.value = value
        self.why = why
        self.source = source
        super().__init__(self.line())

    def line(self) -> str:
        where = f"{escape_unsafe(self.source)}: " if self.source else ""
        if self.value is MISSING:
            return f"{where}{_bounded(self.key)}: {escape_unsafe(self.why)}"
        shown = HIDDEN if names_a_secret(self.key) else show_value(self.value)
        return f"{where}{_bounded(self.key)}={shown}: {escape_unsafe(self.why)}"
