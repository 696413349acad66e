"""What a hard rule is, and the registry every planner stage draws its rules from.

A hard rule is said once, as one :class:`Rule` in :data:`planners.rules.RULES`, and every stage
that must honour it asks the registry instead of spelling the rule again:

    Rule --filters-------> ranking / place / evacuate / improve / chains (whether a node may take
       |                   a unit, and the reason a plan quotes when it may not)
       +--violations-----> rebalance (where the snapshot already breaks the rule; fixed first)
       +--constrain------> cpsat (the rule in the exact model; without it the filters prune the
       |                   model's domain instead)
       +--check_move / --> check_plan (each move of a saved plan, then the end state)
       |  check_end
       +--tally / limit--> waves, check_plan (a wave's arrivals, counted before its departures)
       +--short / frees--> chains (arithmetic: what a node lacks for a unit, what a departure frees)
       +--bound----------> bounds (where a unit may be in every plan, for the proven lower bound)

The registry keeps flat views (all filters in order, the capacity ones, the cheap static ones,
...) so hot loops pay one tuple iteration, as they did when the filters were a module constant;
the views are rebuilt when a rule is registered, so a rule added at run time (a test's toy rule)
reaches every stage.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from planners.state import FleetState
from planners.units import Unit

if TYPE_CHECKING:
    from planners.exact_model import ExactModel


@dataclass(frozen=True)
class Ctx:
    """What a filter needs besides the unit and node: the state and the nodes being emptied."""

    state: FleetState
    emptying: frozenset[str] = field(default_factory=frozenset)


#: Whether ``node`` may take ``unit``: None, or the reason it may not (quoted in plans).
FilterFn = Callable[[Ctx, Unit, str], "str | None"]
#: Where the snapshot already breaks the rule: (unit to move, why), given every unit and the unit of
#: each container.
ViolationFn = Callable[[FleetState, list[Unit], dict[str, Unit]], Iterable[tuple[Unit, str]]]
#: The rule as CP-SAT constraints on the exact model.
ConstrainFn = Callable[["ExactModel"], None]
#: One move of a saved plan: (state before it, container, destination, target storage) -> problem.
MoveCheckFn = Callable[[FleetState, str, str, "str | None"], "str | None"]
#: The end state of a plan, given the moved containers -> problems the move order cannot show.
EndCheckFn = Callable[[FleetState, set[str]], list[str]]
#: What container ``ct`` occupies of the rule's counted limits while on ``node`` (disk on ``storage``,
#: ``copied``: whether its move copies the disk): (key, amount) pairs; a key starts with the rule's name.
TallyFn = Callable[[FleetState, str, str, "str | None", bool], Iterable[tuple[tuple[Hashable, ...], float]]]
Tally = list[tuple[tuple[Hashable, ...], float]]
#: A counted limit's (load now, limit), or None when nothing limits that key.
LimitFn = Callable[[FleetState, tuple[Hashable, ...]], "tuple[float, float] | None"]
#: What ``node`` lacks for ``unit`` (one figure per counted resource; all <= 0: room by arithmetic).
ShortFn = Callable[[FleetState, Unit, str], tuple[float, ...]]
#: What ``unit`` frees on its node by leaving, in the same resources as the rule's ShortFn.
FreesFn = Callable[[FleetState, Unit], tuple[float, ...]]


@dataclass(frozen=True)
class Rule:
    """One hard rule and every form the planner stages need it in (see module docstring).

    ``decides``: "allowed" rules say whether a node may hold the unit at all, "room" rules whether
    an allowed node has space; rejections by a room rule are explained as capacity shortfalls.
    ``static``: the verdict depends on the unit and node only, never on loads, so arithmetic
    searches may apply it before any candidate is scored. ``fix_order``: violations of rules with
    a lower number are fixed first. ``constrain`` None: the exact model honours the rule by
    offering a unit only the nodes its filters accept in the snapshot; ``model_order``: rules'
    constraints are stated lowest first (CP-SAT's search, and so a time-limited solution, depends
    on the order constraints arrive in). ``check_move`` None: a plan's move is checked with the
    rule's filters on the moving container.

    ``tally`` + ``limit``: the rule as counted per-key limits (capacity per node, disk per storage,
    one member of an anti-affinity group per node), which is how a wave's moves are proved safe
    in every order (arrivals counted before departures). ``short`` + ``frees``: the rule as
    resources an ejection chain frees and needs, by arithmetic before any filter runs. ``bound``:
    the verdict holds in every plan of the same kind, so the proven lower bound on the peak may
    rely on it: "always" (wherever the unit ends), "arrive" (only for arrivals: a node may keep
    what it holds; such a rule's filter must speak about the node alone).
    """

    name: str
    filters: tuple[tuple[str, FilterFn], ...] = ()
    decides: Literal["allowed", "room"] = "allowed"
    static: bool = False
    violations: ViolationFn | None = None
    fix_order: int = 100
    constrain: ConstrainFn | None = None
    model_order: int = 100
    check_move: MoveCheckFn | None = None
    check_end: EndCheckFn | None = None
    tally: TallyFn | None = None
    limit: LimitFn | None = None
    short: ShortFn | None = None
    frees: FreesFn | None = None
    bound: Literal["arrive", "always"] | None = None


class Registry:
    """The hard rules in filter order ("allowed" rules, then "room" rules), with flat views."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = ()
        self._set(tuple(rules))

    def _set(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self.filters = tuple(f for r in rules for f in r.filters)
        self.capacity_filters = tuple(f for r in rules if r.decides == "room" for f in r.filters)
        self.static_filters = tuple(fn for r in rules if r.static for _, fn in r.filters)
        self.domain_filters = tuple(fn for r in rules if r.constrain is None for _, fn in r.filters)
        self.by_fix_order = tuple(sorted((r for r in rules if r.violations), key=lambda r: r.fix_order))
        self.by_model_order = tuple(sorted((r for r in rules if r.constrain), key=lambda r: r.model_order))
        self.tallies = tuple(r.tally for r in rules if r.tally and r.limit)
        self.limits = {r.name: r.limit for r in rules if r.tally and r.limit}
        self.room_rules = tuple((r.short, r.frees) for r in rules if r.short and r.frees)
        self.bounding = tuple((r.bound, fn) for r in rules if r.bound for _, fn in r.filters)

    def register(self, rule: Rule) -> None:
        """Add ``rule`` at the end of its kind: after the other "allowed" rules, or last."""
        if any(r.name == rule.name for r in self.rules):
            raise ValueError(f"a rule named {rule.name} is already registered")
        split = sum(1 for r in self.rules if r.decides == "allowed")
        at = split if rule.decides == "allowed" else len(self.rules)
        self._set(self.rules[:at] + (rule,) + self.rules[at:])

    def unregister(self, name: str) -> None:
        self._set(tuple(r for r in self.rules if r.name != name))

    @contextmanager
    def added(self, rule: Rule) -> Iterator[Rule]:
        """``rule`` registered for the duration of a ``with`` block (tests, experiments)."""
        self.register(rule)
        try:
            yield rule
        finally:
            self.unregister(rule.name)

    def first_failure(self, ctx: Ctx, unit: Unit, node: str) -> tuple[str, str] | None:
        """The first filter that rejects ``node`` for ``unit``, as (filter name, reason), or None."""
        for name, check in self.filters:
            why = check(ctx, unit, node)
            if why is not None:
                return name, why
        return None

    def may_land(self, ctx: Ctx, unit: Unit, node: str) -> bool:
        """Whether the static rules (state-independent, cheap) let ``unit`` onto ``node``."""
        for check in self.static_filters:
            if check(ctx, unit, node) is not None:
                return False
        return True

    def move_problem(self, state: FleetState, unit: Unit, dst: str, storage: str | None) -> str | None:
        """The first rule a plan's move of the lone container ``unit`` breaks, or None."""
        ctx = Ctx(state)
        ct = unit.key
        for rule in self.rules:
            if rule.check_move is not None:
                why = rule.check_move(state, ct, dst, storage)
                if why is not None:
                    return why
                continue
            for _, check in rule.filters:
                why = check(ctx, unit, dst)
                if why is not None:
                    return why
        return None

    def bound_allows(self, ctx: Ctx, unit: Unit, node: str, holds_now: bool) -> bool:
        """Whether every plan of this kind may end with ``unit`` on ``node`` (rules with ``bound``;
        "arrive" rules are skipped when the node already holds the unit)."""
        for bound, check in self.bounding:
            if (bound == "always" or not holds_now) and check(ctx, unit, node) is not None:
                return False
        return True

    def tally(self, state: FleetState, ct: str, node: str, storage: str | None, copied: bool) -> Tally:
        """Every counted limit ``ct`` uses on ``node``, over all rules (see :data:`TallyFn`)."""
        return [item for fn in self.tallies for item in fn(state, ct, node, storage, copied)]

    def move_tally(self, state: FleetState, ct: str, src: str, src_storage: str | None, dst: str,
                   dst_storage: str | None, copied: bool) -> tuple[Tally, Tally]:
        """What a move of ``ct`` adds where it arrives and frees where it leaves; a key it both
        leaves and enters (a zone both nodes are in) is in neither: the move leaves it as it was."""
        arrive = self.tally(state, ct, dst, dst_storage, copied)
        leave = self.tally(state, ct, src, src_storage, copied)
        both = {k for k, _ in arrive} & {k for k, _ in leave}
        if both:
            arrive = [(k, v) for k, v in arrive if k not in both]
            leave = [(k, v) for k, v in leave if k not in both]
        return arrive, leave

    def limit(self, state: FleetState, key: tuple[Hashable, ...]) -> tuple[float, float] | None:
        """(load now, limit) of a tally key, or None when unlimited."""
        return self.limits[key[0]](state, key)  # type: ignore[misc, index]

    def shortfall(self, state: FleetState, unit: Unit, node: str) -> tuple[float, ...]:
        """What ``node`` lacks for ``unit`` by arithmetic, per counted resource (all <= 0: room)."""
        return tuple(v for short, _ in self.room_rules for v in short(state, unit, node))

    def frees(self, state: FleetState, unit: Unit) -> tuple[float, ...]:
        """What ``unit``'s departure frees on its node, in :meth:`shortfall`'s resources."""
        return tuple(v for _, frees in self.room_rules for v in frees(state, unit))

    def end_problems(self, state: FleetState, moved: set[str]) -> list[str]:
        return [p for r in self.rules if r.check_end is not None for p in r.check_end(state, moved)]

    def violations(self, state: FleetState, units: list[Unit]) -> list[tuple[Unit, str]]:
        """Every violation of the snapshot, each unit once, lower ``fix_order`` first."""
        unit_of = {ct: u for u in units for ct in u.members}
        found = [v for r in self.by_fix_order for v in r.violations(state, units, unit_of)]  # type: ignore[misc]
        out: list[tuple[Unit, str]] = []
        seen: set[str] = set()
        for unit, why in found:
            if unit.key not in seen:
                seen.add(unit.key)
                out.append((unit, why))
        return out

    def constrain(self, exact: ExactModel) -> None:
        """State every rule that has a CP-SAT form in the exact model, lowest ``model_order`` first."""
        for rule in self.by_model_order:
            rule.constrain(exact)  # type: ignore[misc]
