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

from fleet.errors import InputError
from fleet.model import Container, Inventory, Node, Rules, Storage
from fleet.plan import Goal, Move, Plan, Predicted, Score, Unplaced, Usage
from fleet.policy import Policy
from fleet.rules import EffectiveRules, effective_rules
from fleet.snapshot import (
    dump_inventory,
    inventory_digest,
    load_inventory,
    parse_inventory,
    validate_model,
)

__all__ = [
    "Container", "EffectiveRules", "Goal", "InputError", "Inventory", "Move", "Node", "Plan",
    "Policy", "Predicted", "Rules", "Score", "Storage", "Unplaced", "Usage", "dump_inventory",
    "effective_rules", "inventory_digest", "load_inventory", "parse_inventory", "validate_model",
]
