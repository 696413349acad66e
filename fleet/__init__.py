"""ferry's shared vocabulary: the world (nodes, containers, rules), policy and plans.

Imports nothing else of ferry. Data flows::

    snapshot file --load_inventory--> Inventory --effective_rules--> EffectiveRules
                                          |                               |
                                          +------> planners (+ Policy) <--+
                                                        |
                                                       Plan --to_json--> plan file

Every file and every request body passes :mod:`fleet.document`'s gates before a model sees it:
size, UTF-8, no YAML alias, bounded nesting, safe text (:mod:`fleet.text`), finite numbers.
"""

from importlib import import_module
from typing import Any

#: The module of each name this package exports, imported when the name is first used (PEP 562):
#: ``import fleet.text`` alone must not build every pydantic model, since the CLI's start-up pays
#: for whatever its first imports pull in.
_MODULE_OF = {
    "InputError": "errors", "Container": "model", "Inventory": "model", "Node": "model", "Rules": "model",
    "Storage": "model", "Goal": "plan", "Move": "plan", "Plan": "plan", "Predicted": "plan", "Score": "plan",
    "Unplaced": "plan", "Usage": "plan", "Policy": "policy", "EffectiveRules": "rules",
    "effective_rules": "rules", "dump_inventory": "snapshot", "inventory_digest": "snapshot",
    "load_inventory": "snapshot", "parse_inventory": "snapshot", "validate_model": "snapshot",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'fleet' has no attribute {name!r}")
    return getattr(import_module(f"fleet.{_MODULE_OF[name]}"), name)


__all__ = [
    "Container", "EffectiveRules", "Goal", "InputError", "Inventory", "Move", "Node", "Plan",
    "Policy", "Predicted", "Rules", "Score", "Storage", "Unplaced", "Usage", "dump_inventory",
    "effective_rules", "inventory_digest", "load_inventory", "parse_inventory", "validate_model",
]
