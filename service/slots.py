"""Transfer slots: the concurrency limits and bandwidth budgets apply to moves that are copying data,
across every job and every ferry instance sharing the store.

A move's data phase (pre-sync through cutover) holds one slot: one of the fleet's
(``max_parallel``), one on its source's outgoing side (``max_outgoing_per_node``), one on its
target's incoming side (``max_incoming_per_node``), and its share of both nodes' bandwidth budgets
(``[policy] bandwidth_budget_mb_s`` / ``node_bandwidth_budget_mb_s``; the share is the budget over
the node's slots, the figure the planner predicts with), which the backend receives as the move's
``bwlimit_mb_s``. A node's budget counts what it sends and what it receives.

Slots are rows in the store (``transfer_slots``), taken in one serialised transaction (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: an advisory transaction lock) that first drops the slots no
longer live. A slot is live while the move claim that took it is (same holder, same fencing
token, lease not run out): the slots of an instance that died or froze come back with its move
leases, without anybody releasing them.

Moves outside the data phase (pre-flight, prepare, verify, cleanup) hold none, so the engine admits
a few more moves than there are slots and their checks overlap other moves' copies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from fleet.policy import Policy
from service.move_claims import MoveClaim, renew_move
from service.store import MoveRow, SlotRow, utcnow
from service.wakeups import Wakeups

#: Moves admitted per slot: 2 lets one move prepare or verify while another copies.
ADMISSION_DEPTH = 2
#: Seconds between two looks at the store while waiting for a slot (a release wakes sooner: at once
#: in this process, through PostgreSQL NOTIFY in the others).
_WAIT_S = 0.15
#: Key of the PostgreSQL advisory lock that serialises slot takes ("ferryslt", signed 64-bit).
_SLOT_KEY = int.from_bytes(b"ferryslt", "big", signed=True)


class FleetSlots:
    """The fleet's transfer slots, as one instance sees them through the store."""

    def __init__(self, sessions: sessionmaker[Session], policy: Policy, wakeups: Wakeups | None = None) -> None:
        self.sessions = sessions
        self.policy = policy
        #: Slots freed by other instances wake this one's waiters (PostgreSQL NOTIFY); its clock is
        #: the engine's (bench/engine.py runs on a virtual one).
        self.wakeups = wakeups or Wakeups(sessions.kw["bind"], listen=False)

    def share(self, source: str, target: str) -> float | None:
        """MB/s one move from ``source`` to ``target`` may use: the smaller of the two nodes'
        budgets over their slots; None without budgets."""
        shares = [b / n for b, n in ((self._budget(source), self.policy.max_outgoing_per_node),
                                     (self._budget(target), self.policy.max_incoming_per_node)) if b]
        return min(shares) if shares else None

    def _budget(self, node: str) -> float | None:
        return self.policy.node_bandwidth_budget_mb_s.get(node, self.policy.bandwidth_budget_mb_s)

    @contextmanager
    def hold(self, move: MoveRow, claim: MoveClaim, cancelled: Callable[[], bool] = lambda: False
             ) -> Iterator[float | None]:
        """Wait (re-checking ``cancelled``) for a slot for ``move``, hold it for the block; yields the
        move's bandwidth share. TimeoutError if cancelled while waiting; MoveLost if the claim is."""
        seen = self.wakeups.generation
        while not (taken := self._try_take(move, claim))[0]:
            if cancelled():
                raise TimeoutError("cancelled while waiting for a transfer slot")
            seen = self.wakeups.wait(seen, _WAIT_S)
        try:
            yield taken[1]
        finally:
            with self.sessions.begin() as session:
                session.execute(delete(SlotRow).where(SlotRow.move_id == move.id,
                                                      SlotRow.claim_token == claim.token))
                self.wakeups.notify(session)  # every instance's waiters look again

    def _try_take(self, move: MoveRow, claim: MoveClaim) -> tuple[bool, float | None]:
        """One serialised look: (taken, the move's share; None without budgets)."""
        with self.sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SLOT_KEY})
            renew_move(session, claim)  # fenced: a slot is never taken for a move no longer ours
            live = _live_slots(session)
            share = self.share(move.source, move.target)
            if not self._fits(live, move, share):
                return False, share
            session.execute(delete(SlotRow).where(SlotRow.move_id == move.id))  # a dead holder's
            session.add(SlotRow(move_id=move.id, owner=claim.owner, claim_token=claim.token,
                                source=move.source, target=move.target, bw_mb_s=share))
        return True, share

    def _fits(self, live: list[SlotRow], move: MoveRow, share: float | None) -> bool:
        out = Counter(s.source for s in live)
        into = Counter(s.target for s in live)
        if (len(live) >= self.policy.max_parallel or out[move.source] >= self.policy.max_outgoing_per_node
                or into[move.target] >= self.policy.max_incoming_per_node):
            return False
        for node in (move.source, move.target):
            budget = self._budget(node)
            used = sum(s.bw_mb_s or 0.0 for s in live if node in (s.source, s.target))
            if budget and share and used + share > budget * (1 + 1e-9):
                return False
        return True


def _live_slots(session: Session) -> list[SlotRow]:
    """The slots whose move claims still hold; the others are deleted on the way."""
    now = utcnow()
    rows = session.execute(select(SlotRow, MoveRow.claimed_by, MoveRow.claim_token, MoveRow.lease_until)
                           .join(MoveRow, MoveRow.id == SlotRow.move_id)).all()
    live, dead = [], []
    for slot, holder, token, until in rows:
        alive = holder == slot.owner and token == slot.claim_token and until is not None and until >= now
        (live if alive else dead).append(slot)
    if dead:
        session.execute(delete(SlotRow).where(SlotRow.move_id.in_([s.move_id for s in dead])))
    return live


def slots_in_use(sessions: sessionmaker[Session]) -> list[SlotRow]:
    """The live slots now (for tests and metrics)."""
    with sessions.begin() as session:
        return _live_slots(session)
