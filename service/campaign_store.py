"""Saved rolling maintenance campaigns: the table, their states and their controls.

    ferry maintenance create --> campaigns row (pending, the calendar and the request kept)
        approve --> approved --serve's driver (service.campaign_drive) starts it--> running
        pause --> paused (no new phase starts; its jobs in flight are paused too) --resume--> approved
        cancel --> cancelled (its unfinished jobs are cancelled: their moves in flight roll back)
    --> succeeded (every group home) | failed (a drain or a restore did not succeed)

A campaign's state words are the job's (service.lifecycle.JobState): the same word means the same
thing to an operator. Its progress (one entry per group: phase, jobs, hook, times) is one JSON
document, rewritten whole at every change in the same transaction that decides it, so a restart of
``ferry serve`` continues exactly where the last one stopped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from service.jobs import JobConflict, NoSuchJob
from service.lifecycle import JobState
from service.nodes import NodeState
from service.store import Base, utcnow


class CampaignRow(Base):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # lifecycle.JobState words
    nodes: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: The MaintenancePlanRequest it was made from (re-planned at approval when it named no start).
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    calendar: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: One entry per group of the calendar (see :func:`new_progress`).
    progress: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class StepPhase(StrEnum):
    """Where one group of a campaign is; the middle three are its nodes' states (service.nodes)."""

    WAITING = "waiting"  # the groups before it are not home yet
    DRAINING = NodeState.DRAINING.value
    MAINTENANCE = NodeState.MAINTENANCE.value  # the hook runs, or an operator's restore is awaited
    RESTORING = NodeState.RESTORING.value
    DONE = "done"


class HookState(StrEnum):
    """Where a node's hook is (per node, in its group's ``hooks``)."""

    TO_RUN = "to run"
    RUNNING = JobState.RUNNING.value
    OK = "ok"  # exited 0: the campaign restores the node
    FAILED = JobState.FAILED.value  # exited otherwise or timed out: the operator restores it
    INTERRUPTED = "interrupted"  # ferry restarted while it ran: never run twice
    AWAITING_RESTORE = "awaiting restore"  # no hook: the operator's restore is the "done"


CAMPAIGN_ACTIVE: tuple[JobState, ...] = (JobState.APPROVED, JobState.RUNNING)
CAMPAIGN_FINAL: tuple[JobState, ...] = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class CampaignControl:
    sources: tuple[JobState, ...]
    target: JobState
    #: The same control applied to the campaign's unfinished jobs (None: they are left alone).
    job_action: str | None


CAMPAIGN_CONTROLS: dict[str, CampaignControl] = {
    "approve": CampaignControl((JobState.PENDING,), JobState.APPROVED, None),
    "pause": CampaignControl(CAMPAIGN_ACTIVE, JobState.PAUSED, "pause"),
    "resume": CampaignControl((JobState.PAUSED,), JobState.APPROVED, "resume"),
    "cancel": CampaignControl((JobState.PENDING, *CAMPAIGN_ACTIVE, JobState.PAUSED), JobState.CANCELLED, "cancel"),
}


class NoSuchCampaign(NoSuchJob):
    """An unknown campaign id (the API answers 404, as for a job)."""


def get_campaign(session: Session, campaign_id: int) -> CampaignRow:
    row = session.get(CampaignRow, campaign_id)
    if row is None:
        raise NoSuchCampaign("campaign", campaign_id, "no such campaign; see 'ferry maintenance list'")
    return row


def campaign_transition(action: str, campaign_id: int, current: str) -> JobState:
    """The state ``action`` takes the campaign to; a JobConflict (409 / exit 2) if it may not."""
    control = CAMPAIGN_CONTROLS[action]
    if current not in control.sources:
        allowed = " or ".join(control.sources)
        raise JobConflict("campaign", campaign_id, f"is {current}; only a campaign that is {allowed} can {action}")
    return control.target


def new_progress(calendar: dict[str, Any]) -> list[dict[str, Any]]:
    """The progress of a campaign that has not started: each group waiting, with its predictions."""
    return [{"nodes": step["nodes"], "phase": StepPhase.WAITING.value, "drain_jobs": {}, "restore_jobs": {},
             "hooks": {}, "predicted": {"drain_end": step["drain"]["end"], "restore_end": step["restore"]["end"]},
             "started_at": None, "drained_at": None, "restore_at": None, "ended_at": None}
            for step in calendar["steps"]]


def save_progress(row: CampaignRow, progress: list[dict[str, Any]]) -> None:
    """Write the progress back whole (a JSON column changed in place is not seen as changed)."""
    row.progress = [dict(step) for step in progress]
    row.updated_at = utcnow()
