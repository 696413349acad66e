"""Waves and ``after`` dependencies for moves already in a feasible execution order.

A wave is a set of moves the engine may run at the same time, in any interleaving. That is safe
when, at the start of the wave, every destination could take *all* of the wave's arrivals before
*any* of the wave's departures frees room: the "upper" load ``now + arrivals`` is within every
capacity and anti-affinity limit. Waves are also capped by ``policy.max_parallel``,
``max_outgoing_per_node`` and ``max_incoming_per_node``, and a container moves at most once per
wave (a parked container's second hop waits).

Moves are packed into the earliest safe wave (see :func:`assign_waves`), then listed wave by
wave, so the list stays an execution order in which every prefix keeps every rule. A move
whose destination has room only because earlier waves moved something out of it, or that joins a
node an anti-affinity partner has left, lists those moves in ``after`` (by container id; a
parked container's second hop lists its own id: it waits for its first hop).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet.policy import Policy
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
    """Whether every destination holds all ``steps``' arrivals with no departure counted."""
    mem: dict[str, float] = {}
    cpu: dict[str, float] = {}
    disk: dict[tuple[str, str], float] = {}
    anti: dict[tuple[str, int], int] = {}
    for s in steps:
        c = state.containers[s.ct]
        mem[s.dst] = mem.get(s.dst, 0.0) + c.memory_mb
        cpu[s.dst] = cpu.get(s.dst, 0.0) + c.cpus
        if state.copies_disk(state.where[s.ct], Placement(s.dst, s.storage)) and s.storage:
            disk[(s.dst, s.storage)] = disk.get((s.dst, s.storage), 0.0) + c.disk_gb
        for gi in state.anti_groups_of.get(s.ct, ()):
            anti[(s.dst, gi)] = anti.get((s.dst, gi), 0) + 1
    for node, add in mem.items():
        if state.mem[node] + add > state.mem_cap(node) + EPS:
            return False
    for node, add in cpu.items():
        if state.cpu[node] + add > state.cpu_cap(node) + EPS:
            return False
    for (node, sid), add in disk.items():
        if add > state.disk_free(node, sid) + EPS:
            return False
    return all(state.anti_count.get(key, 0) + add <= 1 for key, add in anti.items())


def assign_waves(start: FleetState, steps: list[Step]) -> list[Step]:
    """The steps re-ordered by wave, with ``wave`` and ``after`` set; ``start`` is not changed.

    Each step, in the given (feasible) order, takes the earliest wave in which: its container
    does not move already or later; no earlier step arrives at its destination in a later wave;
    the wave's concurrency limits allow it; and its destination, at the start of that wave, holds
    every arrival of the wave with no departure counted. Capacity and anti-affinity are per node,
    so steps on other nodes commute with it; the arrival rule keeps every earlier step's own check
    valid, and a new last wave always works (it sees exactly the state the given order had).
    """
    info = _replay(start, steps)
    waves: list[list[int]] = []
    last_arrival: dict[str, int] = {}
    last_move: dict[str, int] = {}
    events: dict[str, list[int]] = {}
    wave_of: list[int] = []
    for i, s in enumerate(steps):
        w = max(last_move.get(s.ct, -1) + 1, last_arrival.get(s.dst, 0))
        while w < len(waves) and not (_admits(start.policy, steps, waves[w], s)
                                      and _fits(start, steps, info, wave_of, events.get(s.dst, []), i, w)):
            w += 1
        if w == len(waves):
            waves.append([])
        waves[w].append(i)
        wave_of.append(w)
        s.wave = w
        last_arrival[s.dst] = max(last_arrival.get(s.dst, 0), w)
        last_move[s.ct] = w
        events.setdefault(s.dst, []).append(i)
        events.setdefault(s.src, []).append(i)
    ordered = [steps[i] for wave in waves for i in wave]
    _attach_after(start, ordered)
    return ordered


def _replay(start: FleetState, steps: list[Step]) -> list[tuple[str | None, bool]]:
    """(source storage, whether the disk is copied) per step, from the given order."""
    state = start.clone()
    out = []
    for s in steps:
        here = state.where[s.ct]
        out.append((here.storage, state.copies_disk(here, Placement(s.dst, s.storage))))
        state.apply(s.ct, s.dst, s.storage)
    return out


def _admits(policy: Policy, steps: list[Step], wave: list[int], s: Step) -> bool:
    if len(wave) >= policy.max_parallel or any(steps[j].ct == s.ct for j in wave):
        return False
    out = sum(1 for j in wave if steps[j].src == s.src)
    inc = sum(1 for j in wave if steps[j].dst == s.dst)
    return out < policy.max_outgoing_per_node and inc < policy.max_incoming_per_node


def _fits(start: FleetState, steps: list[Step], info: list[tuple[str | None, bool]], wave_of: list[int],
          touching: list[int], i: int, w: int) -> bool:
    """Whether step ``i`` fits its destination at the start of wave ``w`` with the wave's arrivals."""
    s = steps[i]
    node = s.dst
    mem, cpu = start.mem[node], start.cpu[node]
    anti_of = start.anti_groups_of.get(s.ct, ())
    anti = {gi: start.anti_count.get((node, gi), 0) for gi in anti_of}
    disk = start.disk.get((node, s.storage), 0.0) if s.storage else 0.0
    for j in touching + [i]:
        t = steps[j]
        wj = w if j == i else wave_of[j]
        c = start.containers[t.ct]
        sign = 1 if t.dst == node and wj <= w else -1 if t.src == node and wj < w else 0
        mem += sign * c.memory_mb
        cpu += sign * c.cpus
        src_storage, copied = info[j]
        if copied and ((sign > 0 and t.storage == s.storage) or (sign < 0 and src_storage == s.storage)):
            disk += sign * c.disk_gb
        for gi in start.anti_groups_of.get(t.ct, ()):
            if gi in anti:
                anti[gi] += sign
    if mem > start.mem_cap(node) + EPS or cpu > start.cpu_cap(node) + EPS:
        return False
    if s.storage is not None and info[i][1] and (node, s.storage) in start.disk:
        if disk > start.disk_cap(node, s.storage) + EPS:
            return False
    return all(count <= 1 for count in anti.values())


def _attach_after(start: FleetState, ordered: list[Step]) -> None:
    initial = _Snapshot(start)
    departed: dict[str, list[tuple[int, str]]] = {}
    last_wave_of: dict[str, int] = {}
    for step in ordered:
        step.after = _after_of(initial, step, departed, last_wave_of)
        departed.setdefault(step.src, []).append((step.wave, step.ct))
        last_wave_of[step.ct] = step.wave


class _Snapshot:
    """Loads at the plan's start, to tell whether a move needed room that others freed."""

    def __init__(self, state: FleetState) -> None:
        self.state = state
        self.mem = dict(state.mem)
        self.cpu = dict(state.cpu)
        self.arrived: dict[str, tuple[float, float]] = {}

    def fits_without_departures(self, step: Step) -> bool:
        st = self.state
        c = st.containers[step.ct]
        mem, cpu = self.arrived.get(step.dst, (0.0, 0.0))
        mem += c.memory_mb
        cpu += c.cpus
        self.arrived[step.dst] = (mem, cpu)
        return (self.mem[step.dst] + mem <= st.mem_cap(step.dst) + EPS
                and self.cpu[step.dst] + cpu <= st.cpu_cap(step.dst) + EPS)


def _after_of(initial: _Snapshot, step: Step, departed: dict[str, list[tuple[int, str]]],
              last_wave_of: dict[str, int]) -> list[str]:
    after: list[str] = []
    if step.ct in last_wave_of:
        after.append(step.ct)
    earlier = [ct for wave, ct in departed.get(step.dst, []) if wave < step.wave]
    if not initial.fits_without_departures(step):
        after.extend(earlier)
    st = initial.state
    partners = {m for gi in st.anti_groups_of.get(step.ct, ()) for m in st.rules.anti_affinity[gi]}
    after.extend(ct for ct in earlier if ct in partners and ct != step.ct)
    return sorted(set(after), key=after.index)
