"""Hostile and malformed snapshots: every text and number field, and the file itself.

The promise under test: whatever a customer names a container and whatever a file holds, loading
either gives back the value intact or refuses it with one InputError line naming the key — never
another exception, never a half-loaded inventory. Each property test counts the inputs it tried
per class and prints the counts (``pytest -s`` shows them).
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet import InputError, load_inventory, parse_inventory
from fleet.document import MAX_DEPTH, MAX_DOCUMENT_BYTES
from fleet.model import MAX_CPUS, MAX_DISK_GB, MAX_MEMORY_MB
from fleet.snapshot import inventory_to_dict

# n2 holds nothing and nothing refers to c2's id, so renaming either breaks no reference: an error
# can only be about the field under test.
BASE: dict[str, Any] = {
    "version": 1, "taken_at": "2026-11-22T03:00:00Z",
    "nodes": [{"name": "n1", "cpus": 8, "memory_mb": 16384, "zone": "rack-a", "kernel": "6.8.12-4-pve",
               "version": "8.3.1", "tags": ["ssd"], "storage": {"local": {"total_gb": 500, "used_gb": 10}}},
              {"name": "n2", "cpus": 8, "memory_mb": 16384, "storage": {"spare": {"total_gb": 100}}}],
    "containers": [{"id": "101", "node": "n1", "name": "web-101", "memory_mb": 1024, "disk_gb": 5,
                    "storage": "local", "ips": ["203.0.113.10"], "tags": ["plb_affinity_web"]},
                   {"id": "c2", "node": "n1", "name": "db", "memory_mb": 2048}],
    "rules": {"pinned": ["101"]},
}
#: (path to the value, key path an error must name). A path ending in "{key}" replaces a dict key.
TEXT_FIELDS = [
    (("taken_at",), "taken_at"), (("nodes", 1, "name"), "nodes[1].name"),
    (("nodes", 0, "zone"), "nodes[0].zone"), (("nodes", 0, "kernel"), "nodes[0].kernel"),
    (("nodes", 0, "version"), "nodes[0].version"), (("nodes", 0, "tags", 0), "nodes[0].tags[0]"),
    (("nodes", 1, "storage", "{key}"), "nodes[1].storage"), (("containers", 1, "id"), "containers[1].id"),
    (("containers", 0, "name"), "containers[0].name"), (("containers", 0, "ips", 0), "containers[0].ips[0]"),
    (("containers", 0, "tags", 0), "containers[0].tags[0]"), (("containers", 0, "extra_note"), "containers[0]"),
    (("containers", 0, "{key}"), "containers[0]"),
]
#: Fields whose values are free text (markup and any printable Unicode must load intact).
FREE_TEXT = {"taken_at", "nodes[0].zone", "nodes[0].kernel", "nodes[0].version", "nodes[0].tags[0]",
             "containers[0].name", "containers[0].tags[0]", "containers[0]"}
NUMBER_FIELDS = [
    (("nodes", 0, "cpus"), MAX_CPUS), (("nodes", 0, "memory_mb"), MAX_MEMORY_MB), (("nodes", 0, "cpu_usage"), 1),
    (("nodes", 0, "storage", "local", "total_gb"), MAX_DISK_GB), (("containers", 0, "cpus"), MAX_CPUS),
    (("containers", 0, "cpu_usage"), 1), (("containers", 0, "memory_mb"), MAX_MEMORY_MB),
    (("containers", 0, "memory_used_mb"), MAX_MEMORY_MB), (("containers", 0, "disk_gb"), MAX_DISK_GB),
    (("containers", 0, "dirty_mb_per_s"), 1e6),
]

UNSAFE = {"control": st.sampled_from([chr(c) for c in range(0x20)] + ["\x7f"]),
          "c1": st.sampled_from([chr(c) for c in range(0x80, 0xA0)]),
          "bidi": st.sampled_from([chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A),
                                                    0x200E, 0x200F, 0x061C, 0x200B, 0xFEFF, 0x2028)])}
MARKUP = st.sampled_from(["[/bold]", "[link=https://evil.example]click[/link]", "[bold red]ERROR[/]",
                          "[/]", "[", "]", "\\[x]", ":smile:", "[red"])
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), min_size=1, max_size=20)


@st.composite
def hostile_text(draw: st.DrawFn) -> tuple[str, str]:
    """(class, text): an unsafe character planted in safe text, markup, a trailing newline, a
    huge string, or plain Unicode."""
    kind = draw(st.sampled_from([*UNSAFE, "markup", "newline", "huge", "unicode"]))
    base = draw(SAFE_TEXT)
    if kind in UNSAFE:
        at = draw(st.integers(0, len(base)))
        return kind, base[:at] + draw(UNSAFE[kind]) + base[at:]
    if kind == "markup":
        return kind, draw(MARKUP) + base
    if kind == "newline":
        return kind, draw(st.sampled_from(["web-101", "101", "203.0.113.7", "n3"])) + "\n"
    if kind == "huge":
        return kind, base * (70_000 // len(base) + 1)
    return kind, base


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if path[-1] == "{key}":
        parent[value] = parent.pop(next(iter(parent))) if parent else {}
    else:
        parent[path[-1]] = value


def _get(data: dict[str, Any], path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return next(iter(data)) if path[-1] == "{key}" else data[path[-1]]


def assert_one_line_naming(exc: InputError, key: str) -> None:
    line = exc.line()
    assert "\n" not in line and "\r" not in line and len(line) < 600, line
    assert exc.key.startswith(key), (exc.key, key, line)


def load_with(path: tuple[Any, ...], value: Any, key: str) -> dict[str, Any] | None:
    """BASE with ``value`` planted at ``path``, loaded and dumped back; None when refused (after
    checking the refusal is one line naming ``key``)."""
    data = copy.deepcopy(BASE)
    _set(data, path, value)
    try:
        return inventory_to_dict(parse_inventory(data))
    except InputError as exc:
        assert_one_line_naming(exc, key)
        return None


def report(name: str, tried: Counter[str]) -> None:
    print(f"\n{name}: {sum(tried.values())} inputs tried: " + ", ".join(f"{k} {n}" for k, n in sorted(tried.items())))


def test_hostile_text_in_every_text_field_loads_intact_or_is_refused_by_name() -> None:
    tried: Counter[str] = Counter()

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(field=st.sampled_from(TEXT_FIELDS), sample=hostile_text())
    def check(field: tuple[tuple[Any, ...], str], sample: tuple[str, str]) -> None:
        (path, key), (kind, text) = field, sample
        tried[kind] += 1
        loaded = load_with(path, text, key)
        if loaded is None:
            return
        assert kind not in UNSAFE and kind not in ("newline", "huge"), (path, text)
        assert _get(loaded, path) == text  # loaded intact
        if kind == "markup":
            assert key in FREE_TEXT  # ids, node names and addresses have no brackets

    check()
    report("text fields", tried)
    assert sum(tried.values()) == 600 and len(tried) == 7


HOSTILE_NUMBERS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 2**63, 10**30, -1, 0, True, "12", None]),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70),
)


def _number_class(value: Any, bound: float) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan/inf"
    return "beyond bounds" if abs(value) > bound else "negative" if value < 0 else "in range"


def test_hostile_numbers_in_every_number_field_load_intact_or_are_refused_by_name() -> None:
    tried: Counter[str] = Counter()

    @settings(max_examples=600, deadline=None)
    @given(field=st.sampled_from(NUMBER_FIELDS), value=HOSTILE_NUMBERS)
    def check(field: tuple[tuple[Any, ...], float], value: Any) -> None:
        (path, bound), kind = field, _number_class(value, field[1])
        tried[kind] += 1
        loaded = load_with(path, value, f"{path[0]}[{path[1]}].{path[2]}")
        if loaded is None:
            return
        assert kind == "in range" and 0 <= value <= bound, (path, value)
        assert _get(loaded, path) == value

    check()
    report("number fields", tried)
    assert sum(tried.values()) == 600 and tried["nan/inf"] > 0 and tried["beyond bounds"] > 0


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_truncated_and_random_files_never_raise_anything_but_input_error() -> None:
    tried: Counter[str] = Counter()
    texts = {".json": json.dumps(BASE, indent=1), ".yaml": yaml.safe_dump(BASE)}

    @settings(max_examples=400, deadline=None)
    @given(suffix=st.sampled_from(sorted(texts)), cut=st.floats(0, 1), junk=st.binary(max_size=64),
           mode=st.sampled_from(["truncated", "binary", "truncated+junk"]))
    def check(suffix: str, cut: float, junk: bytes, mode: str) -> None:
        tried[f"{mode}{suffix}"] += 1
        text = texts[suffix].encode()
        content = {"truncated": text[: int(len(text) * cut)], "binary": junk,
                   "truncated+junk": text[: int(len(text) * cut)] + junk}[mode]
        with tempfile.TemporaryDirectory() as folder:
            path = _write(Path(folder), "snap" + suffix, content)
            try:
                load_inventory(path)
            except InputError as exc:
                assert "\n" not in exc.line()

    check()
    report("files", tried)
    assert sum(tried.values()) == 400


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("trailing.json", '{"version": 1,\n', "line 2"),  # was an IndexError traceback
    ("blank.json", "\n\n", "invalid JSON"),
    ("bomb.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)), "aliases"),
    ("anchor.yaml", "nodes: &n []\nother: *n\n", "aliases"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "nested deeper"),
    ("deep50.json", "[" * 50 + "]" * 50, "nested deeper"),
    ("deep.yaml", "x:\n" + "".join("  " * i + "- \n" for i in range(1, 60)), "nested deeper"),
    ("deepflow.yaml", "[" * 5000, "invalid YAML"),
    ("dupe.json", '{"nodes": [], "nodes": []}', "duplicate key"),
    ("dupe.yaml", "nodes: []\nnodes: []\n", "duplicate key"),
    ("nan.json", json.dumps(BASE).replace('"memory_mb": 1024', '"memory_mb": NaN'), "finite"),
    ("inf.json", json.dumps(BASE).replace('"disk_gb": 5', '"disk_gb": 1e999'), "finite"),
    ("bigint.json", json.dumps(BASE).replace('"memory_mb": 1024', '"memory_mb": ' + "9" * 5000), "invalid JSON"),
    ("nan.yaml", yaml.safe_dump(BASE).replace("disk_gb: 5", "disk_gb: .nan"), "finite"),
    ("esc-key.json", json.dumps({**BASE, "x\u001b[2J": 1}), "U+001B"),
    ("list.yaml", "- 1\n- 2\n", "must be a mapping"),
    ("latin1.yaml", "nodes: [{name: caf\xe9}]".encode("latin-1"), "not UTF-8"),
    ("nul.json", b'{"version": 1}\x00', "binary"),
    ("two.yaml", "a: 1\n---\nb: 2\n", "invalid YAML"),
])
def test_malformed_files_are_refused_in_one_line(tmp_path: Path, name: str, content: str | bytes,
                                                 needle: str) -> None:
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        load_inventory(_write(tmp_path, name, content))
    line = info.value.line()
    assert needle in line and "\n" not in line, line
    assert time.monotonic() - started < 10  # an alias bomb is refused, not expanded


def test_a_file_beyond_the_size_cap_is_refused_without_being_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as fh:  # sparse: costs no disk
        fh.truncate(MAX_DOCUMENT_BYTES + 1)
    with pytest.raises(InputError, match="larger than 64 MiB"):
        load_inventory(path)


def test_a_bom_is_tolerated_and_nesting_at_the_limit_loads(tmp_path: Path) -> None:
    assert load_inventory(_write(tmp_path, "bom.json", "\ufeff" + json.dumps(BASE))).containers[0].id == "101"
    nested: Any = 1
    for _ in range(MAX_DEPTH - 3):  # containers[0].extra... stays within MAX_DEPTH levels
        nested = [nested]
    data = copy.deepcopy(BASE)
    data["containers"][0]["deep"] = nested
    assert parse_inventory(data).containers[0].model_extra["deep"] == nested


def test_an_inventory_that_fails_late_leaves_nothing_behind(tmp_path: Path) -> None:
    """A bad last record refuses the whole file: there is no partial Inventory to use."""
    data = copy.deepcopy(BASE)
    data["containers"].append({"id": "999", "node": "n1", "name": "ok\u202e", "memory_mb": 1})
    path = _write(tmp_path, "late.json", json.dumps(data))
    before = path.read_bytes()
    with pytest.raises(InputError, match=r"containers\[2\]\.name"):
        load_inventory(path)
    assert path.read_bytes() == before
