"""Load and save inventory snapshots (``contracts/inventory.md``), JSON or YAML.

Every failure — unreadable file, bad syntax, a wrong type, a dangling reference — becomes one
:class:`InputError` naming the key path (``containers[3].memory_mb``) and the value. Loading never
changes the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fleet.errors import InputError
from fleet.model import Inventory


def key_path(loc: tuple[Any, ...]) -> str:
    """``('containers', 3, 'memory_mb')`` -> ``containers[3].memory_mb``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _first_error(exc: ValidationError) -> tuple[str, Any, str]:
    err = exc.errors(include_url=False)[0]
    # pydantic reports function-after/before validator frames in loc as strings such as
    # 'function-before[...]'; they are not keys the user wrote.
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p and "(" in p))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return key_path(loc), None, "is required"
    return key_path(loc), err.get("input"), message


def validate_model(model: type, data: Any, *, source: str | None = None) -> Any:
    """Validate ``data`` into ``model``, turning the first pydantic error into an InputError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        key, value, why = _first_error(exc)
        raise InputError(key, value, why, source=source) from None


def _check_references(inv: Inventory, source: str | None) -> None:
    nodes = {}
    for i, node in enumerate(inv.nodes):
        if node.name in nodes:
            raise InputError(f"nodes[{i}].name", node.name, "duplicate node name", source=source)
        nodes[node.name] = node
    seen: set[str] = set()
    for i, ct in enumerate(inv.containers):
        if ct.id in seen:
            raise InputError(f"containers[{i}].id", ct.id, "duplicate container id", source=source)
        seen.add(ct.id)
        if ct.node not in nodes:
            raise InputError(f"containers[{i}].node", ct.node, "no such node", source=source)
        storages = nodes[ct.node].storage
        if ct.storage is not None and storages and ct.storage not in storages:
            raise InputError(
                f"containers[{i}].storage", ct.storage, f"node {ct.node} has no such storage",
                source=source,
            )
    rules = inv.rules
    groups = {"affinity": rules.affinity, "anti_affinity": rules.anti_affinity}
    for name, lists in groups.items():
        for gi, group in enumerate(lists):
            for ci, ct in enumerate(group):
                if ct not in seen:
                    raise InputError(f"rules.{name}[{gi}][{ci}]", ct, "no such container", source=source)
    for name in ("pinned", "ignore"):
        for ci, ct in enumerate(getattr(rules, name)):
            if ct not in seen:
                raise InputError(f"rules.{name}[{ci}]", ct, "no such container", source=source)
    for ct, allowed in rules.pin_to.items():
        if ct not in seen:
            raise InputError(f"rules.pin_to.{ct}", ct, "no such container", source=source)
        for ni, node in enumerate(allowed):
            if node not in nodes:
                raise InputError(f"rules.pin_to.{ct}[{ni}]", node, "no such node", source=source)
    for ni, node in enumerate(rules.exclude_nodes):
        if node not in nodes:
            raise InputError(f"rules.exclude_nodes[{ni}]", node, "no such node", source=source)


def parse_inventory(data: Any, *, source: str | None = None) -> Inventory:
    """Validate already-decoded snapshot data (a dict) into an :class:`Inventory`."""
    if not isinstance(data, dict):
        raise InputError("(top level)", type(data).__name__, "a snapshot must be a mapping", source=source)
    if "version" in data and data["version"] != 1:
        raise InputError("version", data["version"], "only snapshot version 1 is known", source=source)
    inv = validate_model(Inventory, data, source=source)
    _check_references(inv, source)
    return inv


def read_document(path: str | Path) -> Any:
    """Read a JSON or YAML file (YAML is a superset of JSON; ``.json`` files are parsed strictly)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file", str(path), "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("file", str(path), f"cannot read: {exc.__class__.__name__}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"line {exc.lineno}", exc.doc.splitlines()[exc.lineno - 1][:60] if exc.doc else "",
                         f"invalid JSON: {exc.msg}", source=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "document"
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputError(where, path.name, f"invalid YAML: {problem}", source=str(path)) from None


def load_inventory(path: str | Path) -> Inventory:
    return parse_inventory(read_document(path), source=str(path))


def inventory_to_dict(inv: Inventory) -> dict[str, Any]:
    return inv.model_dump(mode="json")


def dump_inventory(inv: Inventory) -> str:
    return json.dumps(inventory_to_dict(inv), indent=2) + "\n"


def inventory_digest(inv: Inventory) -> str:
    """A stable digest of a snapshot's content, so a plan names exactly the world it was made for.
    ``taken_at`` is left out: the same world seen twice has the same digest."""
    content = {k: v for k, v in inventory_to_dict(inv).items() if k != "taken_at"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
