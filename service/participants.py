"""Which live instances take part in a job now, so that they share its ready moves fairly.

    engine (shared) --announce every heartbeat--> job_participants (job, owner, alive_until)
                    <-- live participants of the job (this one included) --
    claim round: take at most this instance's share of the job's moves (service.move_claims)
    engine ends its part in the job --withdraw--> row deleted

An instance that holds no move yet is invisible in the moves' claims; without this row, the
instance whose moves end first would take every ready move again before the others looked. A
participant is live until ``alive_until`` (its lease, renewed with its heartbeat): one that died
or froze stops counting once it runs out, as its move leases do.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, String, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from service.store import Base, utcnow


class ParticipantRow(Base):
    """An instance working on a job's moves, live until ``alive_until``."""

    __tablename__ = "job_participants"
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    alive_until: Mapped[dt.datetime] = mapped_column(DateTime)


def announce(sessions: sessionmaker[Session], job_id: int, owner: str, lease_s: float) -> int:
    """Say that ``owner`` works on the job for the next ``lease_s`` seconds; how many live
    instances work on it now, this one included."""
    until = utcnow() + dt.timedelta(seconds=lease_s)
    with sessions.begin() as session:
        renewed = session.execute(update(ParticipantRow).where(
            ParticipantRow.job_id == job_id, ParticipantRow.owner == owner).values(alive_until=until)).rowcount
        if renewed != 1:  # only this instance writes its own row: no rival insert
            session.add(ParticipantRow(job_id=job_id, owner=owner, alive_until=until))
            session.flush()
        return live_participants(session, job_id)


def live_participants(session: Session, job_id: int) -> int:
    """How many live instances take part in the job now (at least one: the caller)."""
    return max(1, int(session.scalar(select(func.count()).select_from(ParticipantRow).where(
        ParticipantRow.job_id == job_id, ParticipantRow.alive_until >= utcnow())) or 0))


def withdraw(sessions: sessionmaker[Session], job_id: int, owner: str) -> None:
    """``owner`` no longer works on the job (the others' shares grow at their next round)."""
    with sessions.begin() as session:
        session.execute(delete(ParticipantRow).where(ParticipantRow.job_id == job_id,
                                                     ParticipantRow.owner == owner))
