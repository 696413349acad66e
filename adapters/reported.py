"""Records read from a live cluster: shown as they are, refused only when they cannot be used.

A live cluster is untrusted like a snapshot file (customers choose hostnames, names and tags), but
it is not the operator's mistake and ferry cannot edit it. So the two kinds of value are treated
differently:

- free text (a hostname, a name, a tag) is kept, with every control or bidi character written as a
  visible escape (``\\x1b``) and clipped to the model's length: one customer's hostile hostname
  never stops an evacuation at 3 a.m., and never reaches a terminal raw;
- a value ferry acts on (an address, a size, a state) that does not validate stops discovery with
  one line naming the node, the container and the key (a BackendError: exit 1, nothing changed),
  because a move planned around a value ferry cannot read could drop an address.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from adapters.base import BackendError
from fleet.errors import InputError
from fleet.model import MAX_TEXT_CHARS
from fleet.snapshot import validate_model
from fleet.text import escape_unsafe

Record = TypeVar("Record", bound=BaseModel)


def shown_text(text: Any) -> str | None:
    """A customer-chosen text as ferry keeps it: escaped and clipped; None when empty."""
    if text is None or text == "":
        return None
    return escape_unsafe(str(text))[:MAX_TEXT_CHARS]


def shown_texts(texts: list[str]) -> list[str]:
    return [shown for shown in map(shown_text, texts) if shown]


def reported(model: type[Record], fields: dict[str, Any], where: str) -> Record:
    """``model`` built from what the cluster reported at ``where`` ("container 101 on n1"), or a
    BackendError naming the key that cannot be used."""
    try:
        return validate_model(model, fields, source=where)
    except InputError as exc:
        raise BackendError(f"the cluster reported an unusable value: {exc.line()}") from None
