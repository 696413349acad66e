"""Telling people: job awaiting approval, job failed or rolled back, move re-placed, window missed,
campaign step done, maintenance hook late or failed — through Apprise (email, Slack, Matrix,
webhooks... one URL each in ``[notify] urls``).

    events decided elsewhere (service.campaign_drive) --notify(rt, Notice)-->
    the store (service.store jobs, moves, journal) --sweep(rt), every poll of ferry serve-->
        notifications table: one row per event key, inserted before sending (the key is the
        primary key: a second instance, or the next poll, finds it and sends nothing)
        --Apprise--> every configured URL

Level-triggered like the node states: the sweep reads what the store says happened, so an event is
told once even when the ferry that caused it died right after. A URL holds a secret (a password, a
webhook token): no message, log line or error ever shows more of it than its scheme.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, DateTime, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from service.config_sections import NotifySection, redacted  # noqa: F401 - re-exported
from service.lifecycle import JobState
from service.store import Base, JobRow, JournalRow, utcnow

log = logging.getLogger("ferry.notify")

#: Jobs older than this are not looked at by the sweep (a new ferry does not retell history).
SWEEP_HORIZON = dt.timedelta(hours=24)
#: A windowed job handed back by a closed window says so in its message (service.worker).
WINDOW_WAIT = "waiting for a maintenance window"


class NotifyEvent(StrEnum):
    AWAITING_APPROVAL = "awaiting approval"
    JOB_FAILED = "job failed"
    JOB_ROLLED_BACK = "job rolled back"
    MOVE_REPLACED = "move re-placed"
    WINDOW_MISSED = "window missed"
    STEP_DONE = "campaign step done"
    HOOK = "maintenance hook"  # a hook failed or timed out, or a manual 'done' is late


class NotificationRow(Base):
    """An event told (or, with no URL configured, recorded): its key makes it told once."""

    __tablename__ = "notifications"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    event: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    sent: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


@dataclass(frozen=True)
class Notice:
    key: str  # unique per event: 'job:12:failed'
    event: NotifyEvent
    title: str
    body: str


def _claim(sessions: Any, notice: Notice) -> bool:
    """Record the notice; False when it was recorded before (told already, here or elsewhere)."""
    try:
        with sessions.begin() as session:
            if session.get(NotificationRow, notice.key) is not None:
                return False
            session.add(NotificationRow(key=notice.key, event=notice.event, title=notice.title, body=notice.body))
    except IntegrityError:  # another instance recorded it between our look and our insert
        return False
    return True


def send(urls: list[str], notice: Notice) -> bool:
    """Send through Apprise to every URL; whether every one accepted it."""
    import apprise

    if not urls:
        return False
    sender = apprise.Apprise()
    for url in urls:
        sender.add(url)
    return bool(sender.notify(title=notice.title, body=notice.body))


def notify(rt: Any, notice: Notice) -> bool:
    """Tell ``notice`` once (across restarts and instances); whether it was new (told now)."""
    if not _claim(rt.sessions, notice):
        return False
    urls = rt.config.notify.urls
    sent = send(urls, notice)
    if urls and not sent:
        log.warning("notification %r could not be delivered to every URL", notice.key)
    with rt.sessions.begin() as session:
        row = session.get(NotificationRow, notice.key)
        if row is not None:
            row.sent = sent
    return True


# -- what the store says happened ---------------------------------------------------------------
def _job_notices(job: JobRow) -> list[Notice]:
    what = f"job {job.id} ({job.kind} {' '.join(job.nodes)})".replace(" )", ")")
    if job.state == JobState.PENDING:
        return [Notice(f"job:{job.id}:pending", NotifyEvent.AWAITING_APPROVAL, f"ferry: {what} awaits approval",
                       f"Review it with 'ferry job show {job.id}', approve with 'ferry job approve {job.id}'.")]
    if job.state in (JobState.FAILED, JobState.ROLLED_BACK):
        event = NotifyEvent.JOB_FAILED if job.state == JobState.FAILED else NotifyEvent.JOB_ROLLED_BACK
        return [Notice(f"job:{job.id}:{job.state}", event, f"ferry: {what} {job.state.replace('_', ' ')}",
                       f"{job.message or 'see the journal'} ('ferry job show {job.id}')")]
    if job.state == JobState.APPROVED and (job.message or "").startswith(WINDOW_WAIT):
        return [Notice(f"job:{job.id}:window", NotifyEvent.WINDOW_MISSED, f"ferry: {what} missed its window",
                       f"Moves that did not fit before the window closed wait: {job.message}.")]
    return []


def _replaced(entry: JournalRow) -> Notice:
    was = (entry.detail or {}).get("replaced_from")
    return Notice(f"journal:{entry.id}:replaced", NotifyEvent.MOVE_REPLACED,
                  f"ferry: move of {entry.ct} re-placed (job {entry.job_id})",
                  f"It failed at {was}; it now goes to the next-best node. {entry.what}")


def pending_notices(session: Session, now: dt.datetime) -> list[Notice]:
    """Every event in the store of the last SWEEP_HORIZON, told or not (the caller dedupes)."""
    since = now - SWEEP_HORIZON
    jobs = session.scalars(select(JobRow).where(JobRow.updated_at >= since).order_by(JobRow.id))
    notices = [n for job in jobs for n in _job_notices(job)]
    replaced = session.scalars(select(JournalRow).where(JournalRow.at >= since).order_by(JournalRow.id))
    notices += [_replaced(e) for e in replaced if "replaced_from" in (e.detail or {})]
    return notices


def sweep(rt: Any) -> int:
    """Tell every event the store holds that was not told yet; how many were told now."""
    with rt.sessions() as session:
        notices = pending_notices(session, utcnow())
        told = {k for (k,) in session.execute(select(NotificationRow.key).where(
            NotificationRow.key.in_([n.key for n in notices])))}
    return sum(notify(rt, n) for n in notices if n.key not in told)
