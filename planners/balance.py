"""Balance moves of a rebalance: the best single paying move, peak first, with ejection chains
when single moves stall.

    repeat until the move budget is spent or nothing pays:
        hottest nodes x their movable units x coolest nodes --objective delta less estimated
        price--> best CHECKED candidates --filters, exact price--> best single move
        the hottest node cannot shed load by a single paying move (once per node), or no single
        move pays anywhere --> ejection chain of 2-3 moves (planners.chains), applied whole

A balance move must gain at least the threshold (``policy.min_gain`` x the aggressiveness factor)
after paying its copy and downtime cost; a chain, the threshold per move. Every accepted move
lowers the objective, so repeated runs never return to an earlier placement. After a peak-first
stage (:mod:`planners.peak`) the run has a ``peak_cap``: no move or chain may fill a node above it.
"""

from __future__ import annotations

from planners.chains import Chain, best_chain
from planners.objective import CPU_WEIGHT
from planners.pricing import exact_price
from planners.ranking import rank
from planners.rebalance_run import RebalanceRun
from planners.state import EPS
from planners.units import Unit

#: Hottest source nodes examined per balance move.
HOT_NODES = 6
#: Candidate moves checked against the filters per balance step, best first.
CHECKED = 16

Move = tuple[Unit, str, dict[str, str | None], float]  # unit, destination, storages, net gain


def balance(run: RebalanceRun, threshold: float) -> None:
    """Best single moves while one pays, peak first (module docstring)."""
    tried: set[str] = set()  # hottest nodes already offered a peak-first chain
    while run.room() > 0:
        hot, cool = run.heat()
        top = hot[0]
        found = best_single_move(run, threshold, hot[:HOT_NODES])
        if top not in tried and _stuck(run, threshold, top, found):
            tried.add(top)
            if apply_chain(run, _capped(run, best_chain(run, [top], cool, threshold, run.room()))):
                continue
        if found is not None:
            unit, node, storages, gain = found
            run.move(unit, node, storages, f"rebalance (gain {gain:.3f})")
            continue
        if not apply_chain(run, _capped(run, best_chain(run, hot, cool, threshold, run.room()))):
            return


def _capped(run: RebalanceRun, chain: Chain | None) -> Chain | None:
    """The chain, unless it fills a node above the run's peak cap."""
    if chain is None or run.peak_cap is None:
        return chain
    st = run.state
    delta: dict[str, float] = {}
    for unit, src, dst in chain.hops:
        delta[src] = delta.get(src, 0.0) - unit.memory_mb
        delta[dst] = delta.get(dst, 0.0) + unit.memory_mb
    over = any(st.mem[n] + d > run.peak_cap * st.nodes[n].memory_mb + EPS for n, d in delta.items() if d > 0)
    return None if over else chain


def _stuck(run: RebalanceRun, threshold: float, top: str, found: Move | None) -> bool:
    """Whether the hottest node ``top`` sheds nothing by a single paying move: the best move leaves
    another node (or there is none) and no paying move leaves ``top``."""
    return found is None or (run.state.where[found[0].key].node != top
                             and best_single_move(run, threshold, [top]) is None)


def apply_chain(run: RebalanceRun, chain: Chain | None) -> bool:
    """Apply an ejection chain hop by hop (ejections first); False when there is none."""
    if chain is None:
        return False
    keys = tuple(u.key for u, _, _ in chain.hops)
    for (unit, _, dst), storages, why in zip(chain.hops, chain.storages, chain.reasons(), strict=True):
        run.move(unit, dst, storages, why)
        run.chain_reasons[unit.key] = (why, keys)
    return True


def _candidates(run: RebalanceRun, threshold: float, sources: list[str],
                receivers: list[str]) -> list[tuple[float, str, str, Unit]]:
    """(gain, unit key, destination, unit) of every move from ``sources`` to ``receivers`` that
    the arithmetic says pays, best first.

    The gain is the objective's drop (:func:`planners.objective.relocation_delta`, expanded here:
    the source's share once per unit, the destination's per candidate) less the estimated price.
    """
    st = run.state
    cap = float("inf") if run.peak_cap is None else run.peak_cap
    weights = {n: (1.0 / (st.nodes[n].memory_mb * st.mean_memory),
                   CPU_WEIGHT / (st.cpu_cap(n) * st.mean_cpu_cap)) for n in sources + receivers}
    out = []
    for src in sources:
        wm, wc = weights[src]
        mem, cpu = st.mem[src], st.cpu[src]
        for unit in run.movable_on(src):
            m, c = unit.memory_mb, unit.cpus
            relief = (2 * mem * m - m * m) * wm + (2 * cpu * c - c * c) * wc
            relief -= run.price_estimate(unit, receivers[0])
            for dst in run.landings(unit, receivers):
                if dst == src or st.mem[dst] + m > cap * st.nodes[dst].memory_mb + EPS:
                    continue
                dm, dc = weights[dst]
                gain = relief - (2 * st.mem[dst] * m + m * m) * dm - (2 * st.cpu[dst] * c + c * c) * dc
                if gain >= threshold:
                    out.append((gain, unit.key, dst, unit))
    out.sort(key=lambda c: (-c[0], c[1], c[2]))
    return out


def best_single_move(run: RebalanceRun, threshold: float, sources: list[str]) -> Move | None:
    """The best-gain feasible move from the ``sources`` (hot nodes) to the coolest, or None: the
    best :data:`CHECKED` candidates run the filters and are re-priced exactly."""
    _, receivers = run.heat()
    for gain, _, dst, unit in _candidates(run, threshold, sources, receivers)[:CHECKED]:
        good, _ = rank(run.ctx, unit, [dst])
        if not good:
            continue
        storages = good[0].storages
        net = gain + run.price_estimate(unit, dst) - exact_price(run.state, unit, dst, storages)
        if net >= threshold:
            return unit, dst, storages, net
    return None
