"""Waves and ``after`` dependencies for moves already in a feasible execution order.

A wave is a set of moves the engine may run at the same time, in any interleaving. That is safe
when, at the start of the wave, every destination could take *all* of the wave's arrivals before
*any* of the wave's departures frees room: the "upper" load ``now + arrivals`` is within every
capacity and anti-affinity limit. Waves are also capped by ``policy.max_parallel``,
``max_outgoing_per_node`` and ``max_incoming_per_node``, and a container moves at most once per
wave (a parked container's second hop waits).

Moves keep their order; a move joins the current wave if it can, else opens the next one. A move
whose destination has room only because earlier waves moved something out of it, or that joins a
node an anti-affinity partner has left, lists those moves in ``after`` (by container id; a
parked container's second hop lists its own id: it waits for its first hop).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


class _Wave:
    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.out: dict[str, int] = {}
        self.inc: dict[str, int] = {}
        self.cts: set[str] = set()

    def admits(self, step: Step, max_parallel: int, max_out: int, max_in: int) -> bool:
        return (len(self.steps) < max_parallel and step.ct not in self.cts
                and self.out.get(step.src, 0) < max_out and self.inc.get(step.dst, 0) < max_in)

    def add(self, step: Step) -> None:
        self.steps.append(step)
        self.cts.add(step.ct)
        self.out[step.src] = self.out.get(step.src, 0) + 1
        self.inc[step.dst] = self.inc.get(step.dst, 0) + 1


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


def assign_waves(state: FleetState, steps: list[Step]) -> list[Step]:
    """Set ``wave`` and ``after`` on ``steps`` (in place, order kept); ``state`` is the start.

    ``state`` is advanced to the end of the plan as a side effect.
    """
    p = state.policy
    limits = (p.max_parallel, p.max_outgoing_per_node, p.max_incoming_per_node)
    initial = _Snapshot(state)
    waves: list[_Wave] = [_Wave()]
    departed: dict[str, list[tuple[int, str]]] = {}
    last_wave_of: dict[str, int] = {}
    for step in steps:
        wave = waves[-1]
        if not (wave.admits(step, *limits) and arrivals_fit(state, wave.steps + [step])):
            for s in wave.steps:
                state.apply(s.ct, s.dst, s.storage)
            waves.append(_Wave())
            wave = waves[-1]
        step.wave = len(waves) - 1
        step.after = _after_of(initial, step, departed, last_wave_of)
        wave.add(step)
        departed.setdefault(step.src, []).append((step.wave, step.ct))
        last_wave_of[step.ct] = step.wave
    for s in waves[-1].steps:
        state.apply(s.ct, s.dst, s.storage)
    return steps


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
