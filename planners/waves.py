"""Waves and ``after`` dependencies for moves already in a feasible execution order.

A wave is a set of moves the engine may run at the same time, in any interleaving. That is safe
when, at the start of the wave, every destination could take *all* of the wave's arrivals before
*any* of the wave's departures frees room: the "upper" load ``now + arrivals`` is within every
counted limit of the rules (``RULES.tally``: memory and CPUs per node, disk per storage, one member
of an anti-affinity group per node). Waves are also capped by ``policy.max_parallel``,
``max_outgoing_per_node`` and ``max_incoming_per_node``, and a container moves at most once per
wave (a parked container's second hop waits).

Moves are packed into the earliest safe wave (see :func:`assign_waves`), then listed wave by
wave, so the list stays an execution order in which every prefix keeps every rule. A move that
needs what an earlier wave's departure freed under one of those limits (room, or a node a partner
has left) lists those moves in ``after`` (by container id; a parked container's second hop lists
its own id: it waits for its first hop). A new counted rule reaches both through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet.policy import Policy
from planners.rules import RULES, Key
from planners.state import EPS, FleetState, Placement


@dataclass
class Step:
    """One decided move, before costs and waves are attached."""

    ct: str
    src: str
    dst: str
    storage: str | None
    reason: str
    wave: int = 0
    after: list[str] = field(default_factory=list)


def arrivals_fit(state: FleetState, steps: list[Step]) -> bool:
    """Whether ``steps`` are safe in every order: no counted limit of the rules
    (:meth:`planners.rulebook.Registry.tally`) holds their departures' net but not all their
    arrivals with no departure counted (a limit the net breaks too is a move's problem, not the
    wave's: check_plan reports it per move)."""
    upper: dict[Key, float] = {}
    net: dict[Key, float] = {}
    for s in steps:
        here = state.where[s.ct]
        copied = bool(s.storage) and state.copies_disk(here, Placement(s.dst, s.storage))
        arrive, leave = RULES.move_tally(state, s.ct, s.src, here.storage, s.dst, s.storage, copied)
        for key, amount in arrive:
            upper[key] = upper.get(key, 0.0) + amount
            net[key] = net.get(key, 0.0) + amount
        for key, amount in leave:
            net[key] = net.get(key, 0.0) - amount
    for key, add in upper.items():
        limit = RULES.limit(state, key)
        if limit is not None and limit[0] + add > limit[1] + EPS and limit[0] + net[key] <= limit[1] + EPS:
            return False
    return True


def assign_waves(start: FleetState, steps: list[Step]) -> list[Step]:
    """The steps re-ordered by wave, with ``wave`` and ``after`` set; ``start`` is not changed.

    Each step, in the given (feasible) order, takes the earliest wave in which: its container
    does not move already or later; no earlier step arrives at its destination in a later wave;
    the wave's concurrency limits allow it; and, at the start of that wave, every counted limit
    of the rules it uses (capacity, disk, anti-affinity: ``RULES.tally``) holds every arrival of
    the wave with no departure counted. Limits are per key, so steps on other keys commute with
    it; the arrival rule keeps every earlier step's own check valid, and a new last wave always
    works (it sees exactly the state the given order had).
    """
    counts = _Counts(start, steps)
    waves: list[list[int]] = []
    load: list[_WaveLoad] = []
    last_arrival: dict[str, int] = {}
    last_move: dict[str, int] = {}
    wave_of: list[int] = []
    room = _FirstRoom(start.policy, load)
    for i, s in enumerate(steps):
        w = max(last_move.get(s.ct, -1) + 1, last_arrival.get(s.dst, 0), room.first(s))
        while w < len(waves) and not (load[w].admits(start.policy, s) and counts.fits(i, w, wave_of)):
            w += 1
        if w == len(waves):
            waves.append([])
            load.append(_WaveLoad())
        waves[w].append(i)
        load[w].add(s)
        room.filled(s)
        wave_of.append(w)
        s.wave = w
        last_arrival[s.dst] = max(last_arrival.get(s.dst, 0), w)
        last_move[s.ct] = w
        counts.place(i)
    ordered = [steps[i] for wave in waves for i in wave]
    _attach_after(start, ordered)
    return ordered


class _Counts:
    """The rules' counted limits for wave packing: per step, what it adds where it arrives (with
    each key's load and limit at the start) and frees where it leaves; per key, the steps placed
    so far that touch it, in step order. Disks are counted from the given order (a parked
    container's second hop leaves the storage its first hop chose)."""

    def __init__(self, start: FleetState, steps: list[Step]) -> None:
        self.arrive: list[list[tuple[Key, float, float, float]]] = []
        self.leave: list[list[tuple[Key, float]]] = []
        self.events: dict[Key, list[tuple[int, float, bool]]] = {}
        state = start.clone()
        for s in steps:
            here = state.where[s.ct]
            copied = state.copies_disk(here, Placement(s.dst, s.storage))
            arrive, leave = RULES.move_tally(start, s.ct, s.src, here.storage, s.dst, s.storage, copied)
            limited = []
            for key, amount in arrive:
                limit = RULES.limit(start, key)
                if limit is not None:
                    limited.append((key, amount, limit[0], limit[1]))
            self.arrive.append(limited)
            self.leave.append(leave)
            state.apply(s.ct, s.dst, s.storage)

    def fits(self, i: int, w: int, wave_of: list[int]) -> bool:
        """Whether step ``i`` in wave ``w`` keeps every limit it uses with the wave's arrivals."""
        for key, amount, load, limit in self.arrive[i]:
            for j, moved, arrives in self.events.get(key, ()):
                if arrives:
                    if wave_of[j] <= w:
                        load += moved
                elif wave_of[j] < w:
                    load -= moved
            if load + amount > limit + EPS:
                return False
        return True

    def place(self, i: int) -> None:
        for key, amount, _, _ in self.arrive[i]:
            self.events.setdefault(key, []).append((i, amount, True))
        for key, amount in self.leave[i]:
            self.events.setdefault(key, []).append((i, amount, False))


class _WaveLoad:
    """A wave's moves counted for its concurrency limits: in all, out of and into each node."""

    def __init__(self) -> None:
        self.moves = 0
        self.cts: set[str] = set()
        self.out: dict[str, int] = {}
        self.into: dict[str, int] = {}

    def admits(self, policy: Policy, s: Step) -> bool:
        return (self.moves < policy.max_parallel and s.ct not in self.cts
                and self.out.get(s.src, 0) < policy.max_outgoing_per_node
                and self.into.get(s.dst, 0) < policy.max_incoming_per_node)

    def add(self, s: Step) -> None:
        self.moves += 1
        self.cts.add(s.ct)
        self.out[s.src] = self.out.get(s.src, 0) + 1
        self.into[s.dst] = self.into.get(s.dst, 0) + 1


class _FirstRoom:
    """The first wave that is not yet full in all, out of each node and into each node.

    Waves only fill, so each first wave only moves on; a step's search starts at the latest of
    its three (every wave before it would refuse the step: :meth:`_WaveLoad.admits`), so an
    evacuation of a thousand moves from one node does not walk past hundreds of full waves per
    move."""

    def __init__(self, policy: Policy, load: list[_WaveLoad]) -> None:
        self.policy, self.load = policy, load
        self.all = 0
        self.out: dict[str, int] = {}
        self.into: dict[str, int] = {}

    def first(self, s: Step) -> int:
        return max(self.all, self.out.get(s.src, 0), self.into.get(s.dst, 0))

    def filled(self, s: Step) -> None:
        p, load = self.policy, self.load
        while self.all < len(load) and load[self.all].moves >= p.max_parallel:
            self.all += 1
        w = self.out.get(s.src, 0)
        while w < len(load) and load[w].out.get(s.src, 0) >= p.max_outgoing_per_node:
            w += 1
        self.out[s.src] = w
        w = self.into.get(s.dst, 0)
        while w < len(load) and load[w].into.get(s.dst, 0) >= p.max_incoming_per_node:
            w += 1
        self.into[s.dst] = w


def _attach_after(start: FleetState, ordered: list[Step]) -> None:
    """``after`` of each step: its own earlier hop, and the earlier waves' departures from a key
    (``RULES.tally``) it arrives on, when the plan's arrivals there exceed the key's limit counted
    from the start with no departure: without them the step has no room (or meets a partner)."""
    state = start.clone()
    arrived: dict[Key, float] = {}
    departed: dict[Key, list[tuple[int, int, str]]] = {}  # key -> (departure no., wave, container)
    moved: set[str] = set()
    for no, step in enumerate(ordered):
        here = state.where[step.ct]
        copied = state.copies_disk(here, Placement(step.dst, step.storage))
        needed: dict[int, str] = {}
        arrive, leave = RULES.move_tally(start, step.ct, step.src, here.storage, step.dst, step.storage, copied)
        for key, amount in arrive:
            arrived[key] = arrived.get(key, 0.0) + amount
            limit = RULES.limit(start, key)
            if limit is not None and limit[0] + arrived[key] > limit[1] + EPS:
                needed.update((no, ct) for no, wave, ct in departed.get(key, ()) if wave < step.wave)
        after = [step.ct] if step.ct in moved else []
        after.extend(ct for _, ct in sorted(needed.items()) if ct != step.ct)
        step.after = sorted(set(after), key=after.index)
        for key, _ in leave:
            departed.setdefault(key, []).append((no, step.wave, step.ct))
        moved.add(step.ct)
        state.apply(step.ct, step.dst, step.storage)
