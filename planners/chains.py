"""Ejection chains: two or three rebalance moves that together gain what no single move can.

A one-move-at-a-time balancer stalls when the hottest node's big unit fits on no cooler node:
every single move either does not fit or does not pay. Often a short chain does — "move X from D
to E, which makes room for Y to move from the hot node H onto D" — and at depth 3 "Z leaves E
first, which makes room for X". These are the ejection chains of local search for assignment
problems (Glover, "Ejection chains, reference structures and alternating path methods for
traveling salesman problems", 1996; Yagiura et al., "An ejection chain approach for the
generalized assignment problem", INFORMS J. Computing 16(2), 2004).

The search is arithmetic first, filters last, like the single-move search of
:mod:`planners.balance`, and every loop has a fixed bound so planning time stays predictable:

    hot nodes H (CHAIN_HOT) x their movable units Y, largest first (CHAIN_UNITS)
      x cool nodes D (CHAIN_DESTS) that allow Y by rule but lack room for it (RULES.shortfall)
      x units X on D that free enough room (RULES.frees), smallest first (CHAIN_EJECT)
      x cool nodes E (CHAIN_LANDING) with room for X               -> chain (X: D->E, Y: H->D)
      [depth 3, only when no depth-2 chain passes: X lacks room on E:
       x units Z on E (DEEP_EJECT) x cool nodes F (DEEP_LANDING)   -> (Z: E->F, X: D->E, Y: H->D)]
    --objective delta of the whole chain (objective.moves_delta) less estimated prices-->
    best CHECKED chains --filters, hop by hop in execution order, then exact prices--> the best

A chain is applied only as a whole and only when its net gain pays every one of its moves
(``threshold x hops``); it is checked hop by hop on the real filters, so every prefix of the plan
keeps every hard rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from planners.objective import move_cost, moves_delta
from planners.ranking import Candidate, evaluate
from planners.rulebook import Ctx
from planners.rules import RULES
from planners.state import EPS, FleetState, Placement
from planners.units import Unit

CHAIN_HOT = 3
CHAIN_UNITS = 4
CHAIN_DESTS = 8
CHAIN_EJECT = 4
CHAIN_LANDING = 8
DEEP_EJECT = 2
DEEP_LANDING = 4
CHECKED = 8

Hop = tuple[Unit, str, str]  # (unit, from, to)


@dataclass(frozen=True)
class Chain:
    """Moves in execution order (ejections first, the hot node's unit last) and their net gain."""

    hops: tuple[Hop, ...]
    storages: tuple[dict[str, str | None], ...]
    gain: float

    def reasons(self) -> list[str]:
        """Per hop: an ejection names whom it makes room for; the last names whose room it takes."""
        out = []
        n = len(self.hops)
        for i, (unit, src, _) in enumerate(self.hops[:-1]):
            nxt = self.hops[i + 1][0]
            out.append(f"rebalance chain ({n} moves): {unit.key} leaves {src}, which makes room for {nxt.key}")
        last, _, dst = self.hops[-1]
        out.append(f"rebalance chain ({n} moves): {last.key} takes the room {self.hops[-2][0].key} made on {dst}")
        return out


class Mover(Protocol):
    """What the chain search needs from a rebalance run (:class:`planners.rebalance_run.RebalanceRun`)."""

    ctx: Ctx

    def movable_on(self, node: str) -> list[Unit]: ...

    def may_land(self, unit: Unit, dst: str) -> bool: ...

    def price_estimate(self, unit: Unit, dst: str) -> float: ...


def _short(st: FleetState, unit: Unit, node: str) -> tuple[float, ...]:
    """What ``node`` lacks for ``unit`` per counted resource of the rules (memory, CPUs, disk with
    the node's storages pooled; all <= 0: it has room, as far as arithmetic tells; the filters
    have the last word)."""
    return RULES.shortfall(st, unit, node)


def _fits(st: FleetState, unit: Unit, node: str) -> bool:
    return all(short <= EPS for short in _short(st, unit, node))


def _ejectable(run: Mover, node: str, need: tuple[float, ...], limit: int,
               skip: set[str]) -> list[Unit]:
    """The smallest units on ``node`` whose departure frees ``need`` (the rules' resources)."""
    st = run.ctx.state
    units = [u for u in run.movable_on(node) if u.key not in skip
             and all(free >= short - EPS for free, short in zip(RULES.frees(st, u), need, strict=True))]
    units.sort(key=lambda u: (u.memory_mb, u.key))
    return units[:limit]


def _landings(run: Mover, unit: Unit, nodes: list[str], avoid: set[str], limit: int) -> list[str]:
    out = [n for n in nodes if n not in avoid and run.may_land(unit, n)]
    return out[:limit]


def _candidates(run: Mover, hot: list[str], cool: list[str], room: int,
                deep: bool) -> Iterator[tuple[Hop, ...]]:
    """Every chain within the bounds (module docstring), by arithmetic alone."""
    st = run.ctx.state
    for h in hot[:CHAIN_HOT]:
        ys = sorted(run.movable_on(h), key=lambda u: (-u.memory_mb, u.key))[:CHAIN_UNITS]
        for y in ys:
            for d in _landings(run, y, cool, {h}, CHAIN_DESTS):
                need = _short(st, y, d)
                if all(short <= EPS for short in need):
                    continue  # a single move; the single-move search has judged it
                for x in _ejectable(run, d, need, CHAIN_EJECT, {y.key}):
                    if len(x.members) + len(y.members) > room:
                        continue
                    for e in _landings(run, x, cool, {h, d}, CHAIN_LANDING):
                        if _fits(st, x, e):
                            if not deep:
                                yield (x, d, e), (y, h, d)
                        elif deep:
                            yield from _deeper(run, (x, d, e), (y, h, d), cool, room)


def _deeper(run: Mover, xhop: Hop, yhop: Hop, cool: list[str], room: int) -> Iterator[tuple[Hop, ...]]:
    x, d, e = xhop
    y, h, _ = yhop
    st = run.ctx.state
    for z in _ejectable(run, e, _short(st, x, e), DEEP_EJECT, {x.key, y.key}):
        if len(z.members) + len(x.members) + len(y.members) > room:
            continue
        for f in _landings(run, z, cool, {h, d, e}, DEEP_LANDING):
            if _fits(st, z, f):
                yield (z, e, f), xhop, yhop


def _verify(ctx: Ctx, hops: tuple[Hop, ...]) -> tuple[tuple[dict[str, str | None], ...], float] | None:
    """Run the filters hop by hop on the live state (then undo): storages and exact price, or None."""
    st = ctx.state
    undo: list[tuple[str, Placement]] = []
    storages: list[dict[str, str | None]] = []
    price = 0.0
    try:
        for unit, _, dst in hops:
            result = evaluate(ctx, unit, dst)
            if not isinstance(result, Candidate):
                return None
            storages.append(result.storages)
            for ct in unit.members:
                price += move_cost(st, ct, st.where[ct], dst, result.storages.get(ct))
                undo.append((ct, st.apply(ct, dst, result.storages.get(ct))))
        return tuple(storages), price
    finally:
        for ct, old in reversed(undo):
            st.undo(ct, old)


def best_chain(run: Mover, hot: list[str], cool: list[str], threshold: float, room: int) -> Chain | None:
    """The best-gain chain of 2 moves (else of 3) whose net gain is at least ``threshold`` per move.

    ``hot`` lists nodes hottest first, ``cool`` the receiving nodes coolest first; ``room`` is how
    many containers the move budget still allows.
    """
    st = run.ctx.state
    for deep in (False, True):
        ranked = []
        for hops in _candidates(run, hot, cool, room, deep):
            gain = -moves_delta(st, list(hops)) - sum(run.price_estimate(u, dst) for u, _, dst in hops)
            if gain >= threshold * len(hops):
                ranked.append((-gain, tuple((u.key, dst) for u, _, dst in hops), hops))
        ranked.sort(key=lambda r: r[:2])
        for _, _, hops in ranked[:CHECKED]:
            checked = _verify(run.ctx, hops)
            if checked is None:
                continue
            storages, price = checked
            net = -moves_delta(st, list(hops)) - price
            if net >= threshold * len(hops):
                return Chain(hops, storages, net)
    return None
