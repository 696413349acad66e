"""Placement rules as planners use them: the snapshot's ``rules`` merged with ProxLB-style tags.

ProxLB tags (``plb_affinity_<group>``, ``plb_anti_affinity_<group>``, ``plb_pin_<node>``,
``plb_ignore_<anything>``) are read as rules, so operators who already tag their guests for ProxLB
get the same behaviour from ferry. Overlapping affinity groups are merged (affinity is
transitive: if a and b stay together and b and c stay together, all three do).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet.model import Inventory

_TAG_ANTI = "plb_anti_affinity_"
_TAG_AFFINITY = "plb_affinity_"
_TAG_PIN = "plb_pin_"
_TAG_IGNORE = "plb_ignore_"


@dataclass(frozen=True)
class EffectiveRules:
    """Every hard rule of a snapshot, tags included, in a form that is cheap to query."""

    affinity: tuple[frozenset[str], ...] = ()
    anti_affinity: tuple[frozenset[str], ...] = ()
    pinned: frozenset[str] = frozenset()
    pin_to: dict[str, frozenset[str]] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()
    exclude_nodes: frozenset[str] = frozenset()

    def immovable(self, ct: str) -> bool:
        """Pinned and ignored containers never move (ignored ones still count as load)."""
        return ct in self.pinned or ct in self.ignore

    def group_of(self, ct: str) -> frozenset[str]:
        """The affinity group ``ct`` belongs to (itself alone when it has none)."""
        for group in self.affinity:
            if ct in group:
                return group
        return frozenset({ct})


def _merge_groups(groups: list[set[str]]) -> tuple[frozenset[str], ...]:
    """Union overlapping groups (affinity is transitive) with a union-find, near-linear in the
    number of members; ordered by smallest member for determinism."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups:
        members = sorted(group)
        for member in members:
            parent.setdefault(member, member)
        first = root(members[0]) if members else None
        for member in members[1:]:
            other = root(member)
            if other != first:
                parent[other] = first
    merged: dict[str, set[str]] = {}
    for member in parent:
        merged.setdefault(root(member), set()).add(member)
    return tuple(sorted((frozenset(g) for g in merged.values() if len(g) > 1), key=lambda g: sorted(g)))


def effective_rules(inventory: Inventory) -> EffectiveRules:
    rules = inventory.rules
    affinity: dict[str, set[str]] = {}
    anti: dict[str, set[str]] = {}
    tag_pins: dict[str, set[str]] = {}
    ignore = set(rules.ignore)
    for ct in inventory.containers:
        for tag in ct.tags:
            if tag.startswith(_TAG_ANTI):
                anti.setdefault(tag[len(_TAG_ANTI):], set()).add(ct.id)
            elif tag.startswith(_TAG_AFFINITY):
                affinity.setdefault(tag[len(_TAG_AFFINITY):], set()).add(ct.id)
            elif tag.startswith(_TAG_PIN):
                tag_pins.setdefault(ct.id, set()).add(tag[len(_TAG_PIN):])
            elif tag.startswith(_TAG_IGNORE):
                ignore.add(ct.id)
    pin_to = {ct: frozenset(nodes) for ct, nodes in rules.pin_to.items()}
    for ct, nodes in tag_pins.items():
        pin_to[ct] = pin_to[ct] & frozenset(nodes) if ct in pin_to else frozenset(nodes)
    anti_groups = [set(g) for g in rules.anti_affinity] + [g for g in anti.values()]
    return EffectiveRules(
        affinity=_merge_groups([set(g) for g in rules.affinity] + list(affinity.values())),
        anti_affinity=tuple(
            sorted({frozenset(g) for g in anti_groups if len(g) > 1}, key=lambda g: sorted(g))
        ),
        pinned=frozenset(rules.pinned),
        pin_to=pin_to,
        ignore=frozenset(ignore),
        exclude_nodes=frozenset(rules.exclude_nodes),
    )
