"""Reading documents that travel between people and tools: snapshots, plans, configs.

Every byte is untrusted, so a document passes three gates before any model sees it::

    file --read_text: size cap, no NUL, UTF-8--> text
         --decode: JSON (strict) or YAML (no aliases, bounded nesting, no duplicate keys)--> data
         --check_document: every key and string safe (fleet.text), every number finite--> data

Each refusal is one :class:`InputError` naming the key path (``containers[3].name``) or the line.
YAML aliases are refused outright: ``*a`` repeated in nested lists expands a few hundred bytes
into billions of nodes (the "billion laughs"), and no snapshot, plan or config needs them.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from fleet.errors import InputError
from fleet.text import describe_unsafe

#: Largest document read: a snapshot of 100 000 containers is ~40 MB of JSON.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
#: Deepest nesting of lists and mappings: the formats need 5 levels; extra keys get room to spare.
MAX_DEPTH = 32
#: Longest string anywhere in a document (the models bound their own fields more tightly).
MAX_STRING_CHARS = 65_536
#: Integers beyond 64 bits fit no column, counter or API that ferry talks to.
MAX_INT = 2**63 - 1


@functools.cache
def _yaml_loader() -> type:
    """The safe loader, reading an unquoted timestamp (``taken_at: 2026-11-22T03:00:00Z``) as the
    text written, as JSON would: the formats keep times as ISO 8601 strings, and people write
    them in YAML without quotes. Built on the first YAML document: a TOML config or a JSON
    snapshot does not pay for importing PyYAML."""
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return Loader


def key_path(loc: tuple[Any, ...]) -> str:
    """``('containers', 3, 'memory_mb')`` -> ``containers[3].memory_mb``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def read_text(path: str | Path, *, key: str = "file") -> str:
    """The file's text: at most MAX_DOCUMENT_BYTES, no NUL byte, UTF-8 (a leading BOM is dropped)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise InputError(key, str(path), "no such file") from None
    except IsADirectoryError:
        raise InputError(key, str(path), "is a directory, not a file") from None
    except OSError as exc:
        raise InputError(key, str(path), f"cannot read: {exc.strerror or exc.__class__.__name__}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InputError(key, str(path), f"is larger than {MAX_DOCUMENT_BYTES // 2**20} MiB, the most ferry reads")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise InputError(key, str(path), f"is binary (a NUL byte at offset {nul}), not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(key, str(path), f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise InputError(name, value, "duplicate key in one JSON object")
        out[name] = value
    return out


def _decode_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        lines = exc.doc.splitlines()
        shown = lines[exc.lineno - 1][:60] if exc.lineno <= len(lines) else "(end of file)"
        raise InputError(f"line {exc.lineno}", shown, f"invalid JSON: {exc.msg}", source=source) from None
    except InputError as exc:
        raise InputError(exc.key, exc.value, exc.why, source=source) from None
    except RecursionError:
        raise InputError("document", "...", f"nested deeper than {MAX_DEPTH} levels", source=source) from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise InputError("document", source, f"invalid JSON: {exc}", source=source) from None


class _YamlFrame:
    """One open mapping or sequence while scanning YAML events."""

    def __init__(self, mapping: bool) -> None:
        self.mapping, self.count, self.keys = mapping, 0, set[str]()


def _scan_yaml(text: str, source: str) -> None:
    """Refuse aliases, nesting beyond MAX_DEPTH and duplicate keys before anything is built."""
    import yaml

    stack: list[_YamlFrame] = []
    for event in yaml.parse(text, Loader=_yaml_loader()):
        line = f"line {event.start_mark.line + 1}"
        if isinstance(event, yaml.AliasEvent):
            raise InputError(line, f"*{event.anchor}", "YAML aliases are not accepted: write the value out",
                             source=source)
        if isinstance(event, yaml.CollectionEndEvent):
            stack.pop()
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        parent = stack[-1] if stack else None
        if parent is not None and parent.mapping:
            if parent.count % 2 == 0 and isinstance(event, yaml.ScalarEvent):
                if event.value in parent.keys:
                    raise InputError(line, event.value, "duplicate key in one mapping", source=source)
                parent.keys.add(event.value)
            parent.count += 1
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise InputError(line, "...", f"nested deeper than {MAX_DEPTH} levels", source=source)
            stack.append(_YamlFrame(isinstance(event, yaml.MappingStartEvent)))


def _decode_yaml(text: str, source: str) -> Any:
    import yaml

    try:
        _scan_yaml(text, source)
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "document"
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputError(where, Path(source).name, f"invalid YAML: {problem}", source=source) from None


class _Refused(Exception):
    """A bad leaf found by _walk; the frames it unwinds through add their keys to ``path``."""

    def __init__(self, value: Any, why: str) -> None:
        self.value, self.why, self.path = value, why, list[Any]()


def _walk(value: Any, depth: int) -> None:
    """Check one value and everything below it. Recursion is bounded by MAX_DEPTH; the key path is
    built only on failure, so a clean 10 000-container snapshot costs a few tens of milliseconds."""
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise _Refused(value, f"is longer than {MAX_STRING_CHARS} characters")
        problem = describe_unsafe(value)
        if problem:
            raise _Refused(value, problem)
    elif isinstance(value, dict | list | tuple):
        if depth >= MAX_DEPTH:
            raise _Refused("...", f"nested deeper than {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for name, item in items:
            problem = describe_unsafe(name) if isinstance(name, str) else None
            try:
                if problem:
                    raise _Refused(name, f"key {problem}")
                _walk(item, depth + 1)
            except _Refused as refused:
                refused.path.append(name)
                raise
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused(value, "must be a finite number")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise _Refused(value, "is beyond any real figure (more than 64 bits)")


def check_document(data: Any, *, source: str | None = None) -> None:
    """Refuse the first unsafe key, string or number in decoded data, naming its key path; depth
    is bounded too, for data that did not come through read_document (an API request body)."""
    try:
        _walk(data, 0)
    except _Refused as refused:
        raise InputError(key_path(tuple(reversed(refused.path))), refused.value, refused.why,
                         source=source) from None


def decode_document(text: str, *, source: str, json_only: bool = False) -> Any:
    """Decode JSON (strictly, when ``json_only``) or YAML text, and check what came out."""
    data = _decode_json(text, source) if json_only else _decode_yaml(text, source)
    check_document(data, source=source)
    return data


def read_document(path: str | Path) -> Any:
    """Read a JSON or YAML file (YAML is a superset of JSON; ``.json`` files are parsed strictly)."""
    path = Path(path)
    return decode_document(read_text(path), source=str(path), json_only=path.suffix.lower() == ".json")
