"""Which characters untrusted text may carry, and how to show the ones it may not.

Names, hostnames, tags and addresses come from customers. A control character (ESC starts a
terminal escape sequence, CR rewrites a line), a C1 control or a bidirectional override (U+202E
shows ``exe.txt`` as ``txt.exe``) in one of them can repaint an operator's terminal or disguise a
value, and no real cluster needs them. One rule, used by the snapshot model, the document reader,
the config and the tables::

    text --first_unsafe--> None: keep it | position: refuse it (check_text) or escape it (escape_unsafe)

Unsafe are the Unicode categories Cc (C0 and C1 controls, DEL), Cf (format characters: bidi
embeddings, overrides and isolates U+202A-202E / U+2066-2069, marks U+200E/F and U+061C,
zero-width characters), Cs (lone surrogates), Zl and Zp (line and paragraph separators).
"""

from __future__ import annotations

import re

#: Every character of the categories above (Unicode 14, Python 3.11), as one character class: a
#: regex search is far faster than a per-character category lookup, and building the class from
#: unicodedata at import would cost half a second on every ``ferry`` command.
_UNSAFE_RE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    r"\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    r"\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)


def first_unsafe(text: str) -> int | None:
    """Index of the first character that must not reach a terminal or a record, or None."""
    match = _UNSAFE_RE.search(text)
    return match.start() if match else None


def describe_unsafe(text: str) -> str | None:
    """``"contains U+202E (a control or bidi character) at position 3"``, or None when clean."""
    at = first_unsafe(text)
    if at is None:
        return None
    return f"contains U+{ord(text[at]):04X} (a control or bidi character) at position {at}"


def check_text(text: str, max_chars: int) -> str:
    """``text`` when it is 1..max_chars safe characters; else ValueError saying what is wrong
    (pydantic turns it into the error that names the key)."""
    problem = describe_unsafe(text)
    if problem:
        raise ValueError(problem)
    if not 1 <= len(text) <= max_chars:
        raise ValueError(f"must be 1-{max_chars} characters, got {len(text)}")
    return text


def escape_unsafe(text: str) -> str:
    """``text`` with every unsafe character written as a visible escape (``\\x1b``, ``\\u202e``),
    for display of values that were never validated (messages, plans from elsewhere)."""
    if first_unsafe(text) is None:
        return text
    return _UNSAFE_RE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
