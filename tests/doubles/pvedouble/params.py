"""Parameter checking as PVE::JSONSchema::validate does it, with the same error texts, so that a
client sending an unknown or mistyped parameter gets the 400 ``{"data":null,"errors":{...}}``
reply a real node gives."""

from __future__ import annotations

import re
from typing import Any

from tests.doubles.pvedouble.model import ApiError

# A spec is (type, required). Types: "string", "integer", "number", "boolean", "node", "vmid",
# "storage", "integer>=0" / "number>=0" (``minimum => 0`` in the schema), or a tuple of enum values.
Spec = dict[str, tuple[Any, bool]]

_NODE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_STORAGE_RE = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.I)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _check(name: str, kind: Any, raw: Any) -> tuple[Any, str | None]:
    if isinstance(kind, str) and kind.endswith(">=0"):
        value, err = _check(name, kind[:-3], raw)
        if err is None and value < 0:
            return None, "value must have a minimum value of 0"
        return value, err
    text = str(raw)
    if isinstance(kind, tuple):
        if text not in kind:
            return None, f"value '{text}' does not have a value in the enumeration '{', '.join(kind)}'"
        return text, None
    if kind in ("integer", "vmid"):
        if not re.fullmatch(r"-?\d+", text):
            return None, f"type check ('integer') failed - got '{text}'"
        value = int(text)
        if kind == "vmid" and not 100 <= value <= 999999999:
            return None, "value must have a minimum value of 100" if value < 100 else "value too large"
        return value, None
    if kind == "number":
        try:
            return float(text), None
        except ValueError:
            return None, f"type check ('number') failed - got '{text}'"
    if kind == "boolean":
        if text.lower() in _TRUE:
            return 1, None
        if text.lower() in _FALSE:
            return 0, None
        return None, f"type check ('boolean') failed - got '{text}'"
    if kind == "node" and not _NODE_RE.match(text):
        return None, "value does not match the regex pattern"
    if kind == "storage" and not _STORAGE_RE.match(text):
        return None, f"invalid format - storage ID '{text}' contains illegal characters"
    return text, None


def validate(spec: Spec, given: dict[str, Any]) -> dict[str, Any]:
    """The typed parameters, or ApiError(400) naming every bad one."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for name, raw in given.items():
        if name not in spec:
            errors[name] = "property is not defined in schema and the schema does not allow additional properties"
            continue
        value, err = _check(name, spec[name][0], raw)
        if err:
            errors[name] = err
        else:
            out[name] = value
    for name, (_kind, required) in spec.items():
        if required and name not in given:
            errors[name] = "property is missing and it is not optional"
    if errors:
        raise ApiError(400, "Parameter verification failed.", errors)
    return out
