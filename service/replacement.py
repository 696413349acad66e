"""Re-placement: a move that failed for good at its destination goes to the next-best node.

    saga: a destination step failed (lifecycle.DESTINATION_STEPS), rolled back (the source runs)
      --engine--> replace_move(job, move)
          tries so far (the job's journal) < MAX_REPLACEMENTS, job not cancelling?
          fleet as it will be (outlook: other jobs' moves and reservations) minus the nodes tried
          --planners' filters and scorers (ranking.rank)--> best node | none
          best: the move goes back to pending towards it, its container locked again, journaled
          none: the move stays rolled back, its message says why no node can take it

The job fails only when no allowed node can take the container (or every attempt failed), instead
of on the first full disk or failed start. Until the re-placement is decided the move keeps its
claim and the job's end waits (awaits_replacement), so no instance ends the job in between; a
re-placement whose engine died is claimed and decided by another instance. The count lives in the journal (one event per
re-placement, ``detail.replaced_from``), so a resumed job after a crash counts the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from adapters.base import Backend
from fleet.model import Inventory
from fleet.policy import Policy
from planners.ranking import rank
from planners.rulebook import Ctx
from planners.state import FleetState
from planners.units import build_unit
from service.jobs import Claim, get_job, renew_claim
from service.lifecycle import DESTINATION_STEPS, JobState, MoveState
from service.store import JournalRow, LockRow, MoveRow

#: Destinations a move may try after its planned one failed.
MAX_REPLACEMENTS = 2


def destinations_tried(session: Session, move: MoveRow) -> list[str]:
    """The nodes this move already failed at, oldest first (its current target last)."""
    rows = session.scalars(select(JournalRow).where(JournalRow.job_id == move.job_id, JournalRow.ct == move.ct,
                                                    JournalRow.kind == "event").order_by(JournalRow.id))
    earlier = [row.detail["replaced_from"] for row in rows if "replaced_from" in (row.detail or {})]
    return [*earlier, move.target]


@dataclass(frozen=True)
class Destination:
    node: str
    #: The storage the disk lands on, when it differs from the container's own.
    storage: str | None


def next_best(inv: Inventory, policy: Policy, ct: str, avoid: set[str]) -> Destination | str:
    """The best node for ``ct`` outside ``avoid`` (and its own node) by the planners' hard rules
    and scorers, or why there is none."""
    state = FleetState(inv, policy)
    unit = build_unit(state, [ct])
    here = state.where[ct]
    nodes = [n.name for n in inv.nodes if n.name not in avoid and n.name != here.node]
    good, bad = rank(Ctx(state), unit, nodes)
    if not good:
        if not bad:
            return f"no other allowed node can take it (tried {', '.join(sorted(avoid))})"
        return f"no other allowed node can take it ({'; '.join(f'{r.node}: {r.reason}' for r in bad[:3])})"
    storage = good[0].storages.get(ct)
    return Destination(good[0].node, storage if storage != here.storage else None)


def _fleet(sessions: sessionmaker[Session], backend: Backend, kind: str) -> Inventory:
    # Imported here: service.operations imports the engine, which imports this module.
    from service.operations.outlook import as_it_will_be, read_outlook

    with sessions() as session:
        outlook = read_outlook(session)
    return as_it_will_be(backend.discover(), outlook, kind=kind)


#: What a move's message says once its re-placement was decided against (and why, after it).
NOT_REPLACED = "; not re-placed: "


def awaits_replacement(move: Any, cancelling: bool) -> bool:
    """A move rolled back after failing at its destination whose re-placement is not decided yet.

    The job's end waits for it (service.move_claims.decide_job): the saga that rolled it back keeps
    its claim, so its engine re-places it before any instance may end the job, or, if that engine
    died, the next claimant does."""
    return (move.state == MoveState.ROLLED_BACK and move.step in DESTINATION_STEPS and not cancelling
            and NOT_REPLACED not in (move.message or ""))


def replace_move(sessions: sessionmaker[Session], backend: Backend, policy: Policy, job_id: int, move_id: int,
                 claim: Claim | None = None) -> MoveRow | None:
    """Send a move that failed at its destination to the next-best node: the move, pending again,
    or None when it stays rolled back (not a destination failure, cancelled, out of tries, or no
    node can take it; then its message says which). Either way the move's claim is let go."""
    with sessions() as session:
        move, job = session.get(MoveRow, move_id), get_job(session, job_id)
        assert move is not None
        awaits = awaits_replacement(move, job.state == JobState.CANCELLING)
        tried, kind = destinations_tried(session, move), job.kind
    if not awaits:
        _let_go(sessions, move_id)
        return None
    if len(tried) > MAX_REPLACEMENTS:
        return _give_up(sessions, move_id, claim, f"{len(tried)} destinations failed ({', '.join(tried)})")
    choice = next_best(_fleet(sessions, backend, kind), policy, move.ct, set(tried))
    if isinstance(choice, str):
        return _give_up(sessions, move_id, claim, choice)
    return _send(sessions, move_id, claim, choice, tried) or _give_up(
        sessions, move_id, claim, "another job took the container since the rollback")


def _send(sessions: sessionmaker[Session], move_id: int, claim: Claim | None, choice: Destination,
          tried: list[str]) -> MoveRow | None:
    try:
        with sessions.begin() as session:
            if claim is not None:
                renew_claim(session, claim)
            move = session.get(MoveRow, move_id, with_for_update=True)
            assert move is not None
            if move.state != MoveState.ROLLED_BACK:
                return None
            failed, why = move.target, move.message
            session.add(LockRow(ct=move.ct, job_id=move.job_id))  # the saga's end let it go
            move.target, move.state, move.step, move.phase = choice.node, MoveState.PENDING, None, None
            options = {k: v for k, v in (move.options or {}).items() if k != "target_storage"}
            move.options = {**options, "target_storage": choice.storage} if choice.storage else options
            move.started_at = move.finished_at = move.claimed_by = move.lease_until = None
            move.message = f"re-placed onto {choice.node}: {failed} failed ({why})"
            session.add(JournalRow(job_id=move.job_id, ct=move.ct, step=None, kind="event", host="ferry",
                                   what=f"{failed} cannot take {move.ct} ({why}); re-placed onto {choice.node}, "
                                        f"the next-best allowed node (try {len(tried)} of {MAX_REPLACEMENTS})",
                                   status=None, duration_ms=0.0,
                                   detail={"replaced_from": failed, "to": choice.node}))
            return move
    except IntegrityError:  # another job locked the container since the rollback: it is theirs now
        return None


def _give_up(sessions: sessionmaker[Session], move_id: int, claim: Claim | None, why: str) -> None:
    """Leave the move rolled back, saying why it was not re-placed (unless another instance
    decided its re-placement first), and let its claim go: the job's end may be decided now."""
    with sessions.begin() as session:
        if claim is not None:
            renew_claim(session, claim)
        move = session.get(MoveRow, move_id, with_for_update=True)
        assert move is not None
        if awaits_replacement(move, cancelling=False):
            move.message = f"{move.message}{NOT_REPLACED}{why}"
        if move.state == MoveState.ROLLED_BACK:
            move.claimed_by = move.lease_until = None
    return None


def _let_go(sessions: sessionmaker[Session], move_id: int) -> None:
    """Let go of the claim a rolled-back move kept for its re-placement (none is made)."""
    with sessions.begin() as session:
        session.execute(update(MoveRow).where(MoveRow.id == move_id, MoveRow.state == MoveState.ROLLED_BACK)
                        .values(claimed_by=None, lease_until=None))
