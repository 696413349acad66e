"""Re-placement: a move that failed for good at its destination goes to the next-best node.

    saga: a destination step failed (lifecycle.DESTINATION_STEPS), rolled back (the source runs)
      --engine--> replace_move(job, move)
          tries so far (the job's journal) < MAX_REPLACEMENTS, job not cancelling?
          fleet as it will be (outlook: other jobs' moves and reservations) minus the nodes tried
          --planners' filters and scorers (ranking.rank)--> best node | none
          best: the move goes back to pending towards it, its container locked again, journaled
          none: the move stays rolled back, its message says why no node can take it

The job fails only when no allowed node can take the container (or every attempt failed), instead
of on the first full disk or failed start. The count lives in the journal (one event per
re-placement, ``detail.replaced_from``), so a resumed job after a crash counts the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
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


def replace_move(sessions: sessionmaker[Session], backend: Backend, policy: Policy, job_id: int, move_id: int,
                 claim: Claim | None = None) -> MoveRow | None:
    """Send a move that failed at its destination to the next-best node: the move, pending again,
    or None when it stays rolled back (not a destination failure, cancelled, out of tries, or no
    node can take it; then its message says which)."""
    with sessions() as session:
        move, job = session.get(MoveRow, move_id), get_job(session, job_id)
        assert move is not None
        if (move.state != MoveState.ROLLED_BACK or move.step not in DESTINATION_STEPS
                or job.state == JobState.CANCELLING):
            return None
        tried, kind = destinations_tried(session, move), job.kind
    if len(tried) > MAX_REPLACEMENTS:
        return _give_up(sessions, move_id, claim, f"{len(tried)} destinations failed ({', '.join(tried)})")
    choice = next_best(_fleet(sessions, backend, kind), policy, move.ct, set(tried))
    if isinstance(choice, str):
        return _give_up(sessions, move_id, claim, choice)
    return _send(sessions, move_id, claim, choice, tried)


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
    """Leave the move rolled back, saying why it was not re-placed."""
    with sessions.begin() as session:
        if claim is not None:
            renew_claim(session, claim)
        move = session.get(MoveRow, move_id, with_for_update=True)
        assert move is not None
        move.message = f"{move.message}; not re-placed: {why}"
    return None
