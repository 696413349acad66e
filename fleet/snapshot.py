"""Load and save inventory snapshots (``contracts/inventory.md``), JSON or YAML.

Every failure — unreadable, oversized or binary file, bad syntax, a YAML alias, a control character,
a wrong type or an out-of-range figure, a dangling reference — becomes one :class:`InputError`
naming the key path (``containers[3].memory_mb``) and the value; nothing is half-loaded. Loading
never changes the file. File-level checks live in :mod:`fleet.document`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fleet.document import check_document, key_path, read_document
from fleet.errors import MISSING, InputError
from fleet.model import Inventory

__all__ = ["key_path", "read_document", "validate_model", "parse_inventory", "load_inventory",
           "inventory_to_dict", "dump_inventory", "inventory_digest"]


def _known_keys(model: type, loc: tuple[Any, ...]) -> list[str]:
    """The keys a model accepts at ``loc`` (following nested models), for "did you mean"."""
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part) if isinstance(part, str) else None
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(getattr(model, "model_fields", {}))


def _first_error(exc: ValidationError, model: type) -> tuple[str, Any, str]:
    err = exc.errors(include_url=False)[0]
    # pydantic reports function-after/before validator frames in loc as strings such as
    # 'function-before[...]', and a bad dict key as '[key]': neither is a key the user wrote.
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.endswith("]") and "[" in p
                                              and ("(" in p or p == "[key]")))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return key_path(loc), MISSING, "is required"
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(model, loc[:-1]), n=1)
        return key_path(loc), err.get("input"), "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    return key_path(loc), err.get("input"), message


def validate_model(model: type, data: Any, *, source: str | None = None) -> Any:
    """Validate ``data`` into ``model``, turning the first pydantic error into an InputError.
    The data is untrusted wherever it came from (a file, an API body): every key, string and
    number in it is checked first (:func:`fleet.document.check_document`), extra keys included."""
    check_document(data, source=source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        key, value, why = _first_error(exc, model)
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
