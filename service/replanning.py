"""Re-planning what a pre-empted job has left: its remaining moves, against the fleet as it will be.

    create_job of a higher job --preemption.transfer--> the lower job yields moves; its journal
        event ``taken_by: J`` marks it for a re-plan
    engine starts the lower job (now, or when its window opens), or sees moves of the job it runs
    yielded in a claim round --replan_remaining-->
        remaining = its pending moves nobody has claimed (not yielded, not started)
        fleet as it will be: the live fleet + node states + every active job's landings and
            reservations (service.operations.outlook), except the remaining moves themselves
        a fresh plan by the job's own planner (plan_drain / plan_evacuate for its nodes,
            plan_rebalance for a rebalance), kept to the remaining containers
        --> one transaction: each remaining move re-targeted, kept, or yielded (no longer
            useful); one journal event saying which, ``replanned_after: [J]``; nothing left:
            "the job yields" (the engine then records its end)

The plan a lower job was approved with was made before the higher job's moves: their landings may
now fill its destinations, or make its moves pointless. The re-plan only narrows or re-aims what
was approved: it never adds a container. A move whose old or new destination needs a new address
(or is a restore) keeps its approved plan: its addresses were allocated with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adapters.base import Backend
from fleet.model import Inventory
from fleet.plan import Move, Plan
from fleet.policy import Policy
from planners import plan_drain, plan_evacuate, plan_rebalance
from service.jobs import get_job
from service.lifecycle import JOB_ADVANCING, MoveState
from service.move_claims import move_holder
from service.movespec import move_options
from service.nodes import apply_node_states, stored_states
from service.store import JobRow, JournalRow, LockRow, MoveRow

NODE_PLANNERS = {"drain": plan_drain, "evacuate": plan_evacuate}


def replans_owed(session: Session, job_id: int) -> list[int]:
    """The higher jobs that took moves from this one since its last re-plan (journal events)."""
    rows = session.scalars(select(JournalRow.detail).where(JournalRow.job_id == job_id, JournalRow.ct.is_(None),
                                                           JournalRow.kind == "event"))
    taken, done = set(), set()
    for detail in rows:
        if "taken_by" in (detail or {}):
            taken.add(int(detail["taken_by"]))
        done.update(int(j) for j in (detail or {}).get("replanned_after", []))
    return sorted(taken - done)


@dataclass
class Outcome:
    """What the re-plan did to each remaining move (containers by name)."""

    after: list[int]
    retargeted: dict[str, tuple[str, str]] = field(default_factory=dict)  # ct -> (old, new target)
    kept: list[str] = field(default_factory=list)
    yielded: dict[str, str] = field(default_factory=dict)  # ct -> why

    def line(self) -> str:
        by = ", ".join(f"job {j}" for j in self.after)
        if not self.retargeted and not self.kept:
            return (f"re-planned after {by} took its containers: nothing useful left to move "
                    f"({_why(self.yielded)}); the job yields")
        moved = "; ".join(f"{ct} now goes to {new} (was {old})" for ct, (old, new) in sorted(self.retargeted.items()))
        parts = [moved] if moved else []
        parts += [f"{_names(self.kept)} as planned"] if self.kept else []
        parts += [f"yielded {_why(self.yielded)}"] if self.yielded else []
        return f"re-planned what is left after {by} took its containers, against the fleet as it will be: " + \
            "; ".join(parts)


def _names(cts: Iterable[str]) -> str:
    return ", ".join(sorted(cts)) or "none"


def _why(yielded: dict[str, str]) -> str:
    return "; ".join(f"{ct}: {why}" for ct, why in sorted(yielded.items()))


def replan_remaining(sessions: sessionmaker[Session], backend: Backend, policy: Policy,
                     job_id: int) -> Outcome | None:
    """Re-plan the job's remaining moves if a higher job took some of its moves since its last
    re-plan; what it did, or None when it owed none (or another instance did it first)."""
    from service.operations.outlook import as_it_will_be, read_outlook  # operations imports the engine

    with sessions() as session:
        job = get_job(session, job_id)
        after = replans_owed(session, job_id)
        if not after or job.state not in JOB_ADVANCING:
            return None
        kind, nodes = job.kind, list(job.nodes or [])
        outlook = read_outlook(session)
    inv = apply_node_states(backend.discover(), stored_states(sessions))
    others = [landing for landing in outlook.landings if landing.job_id != job_id or landing.started]
    fleet = as_it_will_be(inv, outlook.__class__(outlook.reserved, others), kind=kind, nodes=nodes)
    plan = _fresh_plan(fleet, policy, kind, nodes)
    fresh: dict[str, Move | str] = {m.ct: m for m in plan.moves}
    fresh.update({u.ct: f"no node can take it now ({u.reason})" for u in plan.unplaced})
    with sessions.begin() as session:
        session.get(JobRow, job_id, with_for_update=True)  # one re-plan at a time per job
        if replans_owed(session, job_id) != after:
            return None
        outcome = _apply(session, job_id, fresh, Outcome(after))
        session.add(JournalRow(job_id=job_id, ct=None, step=None, kind="event", host="ferry", what=outcome.line(),
                               status=None, duration_ms=0.0,
                               detail={"replanned_after": after, "retargeted": sorted(outcome.retargeted),
                                       "kept": sorted(outcome.kept), "given_up": sorted(outcome.yielded)}))
    return outcome


def _fresh_plan(fleet: Inventory, policy: Policy, kind: str, nodes: list[str]) -> Plan:
    """The job's own planner on the fleet as it will be."""
    if kind in NODE_PLANNERS:
        return NODE_PLANNERS[kind](fleet, nodes, policy)
    return plan_rebalance(fleet, policy)


def _apply(session: Session, job_id: int, fresh: dict[str, Move | str], outcome: Outcome) -> Outcome:
    """Re-aim, keep or yield each remaining move (``fresh``: the new plan's move of each container,
    or why it has none); moves waiting for a yielded one yield too."""
    moves = list(session.scalars(select(MoveRow).where(MoveRow.job_id == job_id).order_by(MoveRow.seq)
                                 .with_for_update().execution_options(populate_existing=True)))
    cts = {m.ct for m in moves}  # locked: a claim either came first (then it runs as planned) or waits
    remaining = [m for m in moves if m.state == MoveState.PENDING and move_holder(m) is None]
    for move in remaining:
        new = fresh.get(move.ct, "a fresh plan leaves it where it is")
        if isinstance(new, str):
            outcome.yielded[move.ct] = new
        elif new.to == move.target or new.address or new.restore or {"ips", "archive"} & set(move.options or {}):
            outcome.kept.append(move.ct)
        else:
            outcome.retargeted[move.ct] = (move.target, new.to)
            move.target, move.method, move.options = new.to, new.method, move_options(new)
            move.predicted = new.predicted.model_dump(mode="json")
            move.after = [ct for ct in new.after if ct in cts]
            move.claim_token += 1  # a claimant that read the old move loses its compare-and-set
    _yield_dependents(remaining, outcome)
    for move in remaining:
        if move.ct in outcome.yielded:
            move.state = MoveState.YIELDED
            move.message = f"yielded on re-plan after job {outcome.after[-1]}: {outcome.yielded[move.ct]}"
    session.execute(LockRow.__table__.delete().where(LockRow.job_id == job_id,
                                                     LockRow.ct.in_(list(outcome.yielded))))
    return outcome


def _yield_dependents(remaining: list[MoveRow], outcome: Outcome) -> None:
    """A remaining move that waits (``after``) for a yielded one would only be skipped: yield it."""
    changed = True
    while changed:
        changed = False
        for move in remaining:
            waits = sorted(set(move.after) & set(outcome.yielded))
            if move.ct not in outcome.yielded and waits:
                outcome.yielded[move.ct] = f"it waited for the move of {waits[0]}, which no longer stands"
                outcome.kept = [ct for ct in outcome.kept if ct != move.ct]
                outcome.retargeted.pop(move.ct, None)
                changed = True
