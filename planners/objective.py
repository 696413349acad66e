"""The balance objective planners minimise, and cheap deltas of it for candidate moves.

``objective = sum_n w_n (mem_n/ram_n)^2 + CPU_WEIGHT * sum_n v_n (cpus_n/cpu_cap_n)^2 + move costs``
over every node, with ``w_n = ram_n / mean ram`` and ``v_n = cpu_cap_n / mean cpu_cap``. The
weights make *equal utilisation* the optimum on nodes of different sizes (minimising the plain sum
of squared utilisations would fill big nodes fuller than small ones: its optimum has utilisation
proportional to size); on equal nodes the two are the same. Terms are kept in the scale of a
squared utilisation so that ``policy.min_gain`` reads naturally. The scorers use — the same terms as :mod:`planners.scorers`, so a placement scored one unit at a
time and a plan improved move by move optimise the same thing. Deltas are pure arithmetic on the
loads (no filters), so thousands of candidates are ranked before the few best are checked.
"""

from __future__ import annotations

from planners.costs import predict
from planners.state import FleetState, Placement
from planners.units import Unit

#: Weight of CPU balance relative to memory balance: memory leads, CPU breaks near-ties (weighing
#: one resource at a time is what makes greedy balancers oscillate).
CPU_WEIGHT = 0.1
#: Penalty per GiB copied: 100 GiB cost 0.002 (moving 4 GiB between 384 GiB nodes 20 points
#: apart gains ~0.004).
COST_PER_GIB = 0.00002
#: Penalty per second of predicted downtime (a restart-mode move of ~8 s costs 0.0008).
COST_PER_DOWNTIME_S = 0.0001


def node_term(state: FleetState, node: str, mem: float, cpu: float) -> float:
    """One node's share of the objective at the given loads."""
    return mem * mem / state.mem_den[node] + CPU_WEIGHT * cpu * cpu / state.cpu_den[node]


def relocation_delta(state: FleetState, unit: Unit, src: str, dst: str) -> float:
    """Objective change (balance terms only) of moving the whole ``unit`` from ``src`` to ``dst``."""
    mem = unit.memory_mb
    cpu = unit.cpus
    before = node_term(state, src, state.mem[src], state.cpu[src]) + node_term(
        state, dst, state.mem[dst], state.cpu[dst])
    after = node_term(state, src, state.mem[src] - mem, state.cpu[src] - cpu) + node_term(
        state, dst, state.mem[dst] + mem, state.cpu[dst] + cpu)
    return after - before


def moves_delta(state: FleetState, hops: list[tuple[Unit, str, str]]) -> float:
    """Objective change (balance terms only) of several whole-unit moves ``(unit, src, dst)``.

    Loads are summed per node first, so a node that one hop leaves and another enters (the
    middle of an ejection chain, :mod:`planners.chains`) is counted once, at its final load.
    """
    dmem: dict[str, float] = {}
    dcpu: dict[str, float] = {}
    for unit, src, dst in hops:
        for node, sign in ((src, -1.0), (dst, 1.0)):
            dmem[node] = dmem.get(node, 0.0) + sign * unit.memory_mb
            dcpu[node] = dcpu.get(node, 0.0) + sign * unit.cpus
    return sum(node_term(state, n, state.mem[n] + dmem[n], state.cpu[n] + dcpu[n])
               - node_term(state, n, state.mem[n], state.cpu[n]) for n in dmem)


def swap_delta(state: FleetState, a: Unit, na: str, b: Unit, nb: str) -> float:
    """Objective change (balance terms only) of exchanging unit ``a`` on ``na`` with ``b`` on ``nb``."""
    dm = b.memory_mb - a.memory_mb
    dc = b.cpus - a.cpus
    before = node_term(state, na, state.mem[na], state.cpu[na]) + node_term(
        state, nb, state.mem[nb], state.cpu[nb])
    after = node_term(state, na, state.mem[na] + dm, state.cpu[na] + dc) + node_term(
        state, nb, state.mem[nb] - dm, state.cpu[nb] - dc)
    return after - before


def move_cost(state: FleetState, ct: str, origin: Placement, dst: str, storage: str | None) -> float:
    """Priced cost of moving ``ct`` from ``origin`` (where it is in the snapshot) to ``dst``."""
    if origin.node == dst or origin.node not in state.nodes:
        return 0.0  # staying, or a new container (nothing to copy)
    return price_of_class(state, ct, origin.node, dst, state.copies_disk(origin, Placement(dst, storage)))


def price_of_class(state: FleetState, ct: str, src: str, dst: str, copied: bool) -> float:
    """:func:`priced`, cached per destination class in the state: it depends on the destination
    only through its platform, kernel, version and the link from the source (the same for every
    destination unless the policy names links), so a large fleet prices each class once."""
    target = state.nodes[dst]
    key = (ct, src, target.platform, target.kernel, target.version,
           dst if state.policy.link_mb_s else None, copied)
    cache = state.expected_prices
    if key not in cache:
        cache[key] = priced(state, ct, src, dst, copied)
    return cache[key]


def priced(state: FleetState, ct: str, src: str, dst: str, copied: bool) -> float:
    """Bytes and downtime of one move in objective units (see the constants above)."""
    cost = predict(state.containers[ct], state.nodes[src], state.nodes[dst], state.policy, copied)
    return cost.bytes / 2**30 * COST_PER_GIB + cost.downtime_s * COST_PER_DOWNTIME_S


def expected_copy(state: FleetState, ct: str, dst: str) -> bool:
    """Whether moving ``ct`` to ``dst`` copies its disk, known before a storage is chosen.

    :func:`planners.storage.assign_storage` keeps the storage id when the destination has it, and
    a shared storage always has room, so the disk stays put exactly when it is on a shared
    storage the destination also mounts as shared.
    """
    here = state.where[ct]
    if here.storage is None:
        return False
    src = state.nodes[here.node].storage.get(here.storage)
    mine = state.nodes[dst].storage.get(here.storage)
    return not (src is not None and src.shared and mine is not None and mine.shared)


def expected_price(state: FleetState, ct: str, dst: str) -> float:
    """:func:`move_cost` of ``ct`` to ``dst`` from where it is now, known before a storage is chosen
    (:func:`expected_copy`), or 0 for a new container; cached per class (:func:`price_of_class`)."""
    src = state.where[ct].node
    if src not in state.nodes:
        return 0.0  # a new container: nothing to copy
    return price_of_class(state, ct, src, dst, expected_copy(state, ct, dst))
