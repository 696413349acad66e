"""Saved campaigns on request: create, list, show, approve, pause, resume, cancel
(``ferry maintenance …``, ``/v1/maintenance/campaigns``); ``ferry serve`` runs them
(service.campaign_drive).

    create --plan_maintenance (the calendar; refused when a container has no place or a move fits
        in no window)--> campaigns row, pending (approved with approve=true)
    approve --(no start given: re-planned from now)--> approved: the next poll of serve starts it
    show --> each group's phase, its jobs' moves done / total, its hook, predicted vs actual ends
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field
from sqlalchemy import select

from fleet.errors import InputError
from service import jobs
from service.campaign_store import (
    CAMPAIGN_CONTROLS,
    CampaignRow,
    campaign_transition,
    get_campaign,
    new_progress,
)
from service.campaigns import MaintenancePlanRequest, plan_maintenance
from service.lifecycle import JOB_FINAL, JOB_TRANSITIONS, JobEvent, JobState, MoveState
from service.runtime import Runtime
from service.store import MoveRow, utcnow


class CampaignCreateRequest(MaintenancePlanRequest):
    approve: bool = Field(default=False, description="approve it at once: 'ferry serve' starts it on its next poll")


def _planned(rt: Runtime, request: MaintenancePlanRequest) -> dict[str, Any]:
    calendar = plan_maintenance(rt, request)
    if calendar.problems:
        raise InputError("nodes", request.nodes, f"the campaign cannot complete: {calendar.problems[0]}")
    return calendar.to_dict()


def create_campaign(rt: Runtime, request: CampaignCreateRequest) -> dict[str, Any]:
    """Plan the calendar and save it as a campaign (pending unless ``approve``). ``ferry serve``
    starts moves in the configured windows only, so a calendar in other windows is refused: its
    predictions would not be what happens."""
    if request.windows and request.windows != rt.config.schedule.windows:
        raise InputError("windows", request.windows, "a saved campaign moves in the configured [schedule] "
                         "windows only: leave it out, or configure these windows")
    calendar = _planned(rt, request)
    with rt.sessions.begin() as session:
        row = CampaignRow(state=JobState.APPROVED if request.approve else JobState.PENDING, nodes=request.nodes,
                          request=request.model_dump(exclude={"approve"}), calendar=calendar,
                          progress=new_progress(calendar), message="")
        session.add(row)
        session.flush()
        campaign_id = row.id
    return show_campaign(rt, campaign_id)


def control_campaign(rt: Runtime, campaign_id: int, action: str) -> dict[str, Any]:
    """approve | pause | resume | cancel: {id, from, state}; pause, resume and cancel do the same
    to the campaign's unfinished jobs (a job that already moved on is left as it is)."""
    if action == "approve":
        _replan_if_stale(rt, campaign_id)
    with rt.sessions.begin() as session:
        row = get_campaign(session, campaign_id)
        old = row.state
        row.state = campaign_transition(action, campaign_id, old)
        row.message = f"{JOB_TRANSITIONS[JobEvent(action)].past} by an operator"  # the job's words
        if row.state == JobState.CANCELLED:
            row.finished_at = utcnow()
        job_ids = [j for step in row.progress for j in (*step["drain_jobs"].values(), *step["restore_jobs"].values())
                   if j is not None]
    job_action = CAMPAIGN_CONTROLS[action].job_action
    for job_id in job_ids if job_action else ():
        try:
            jobs.control_job(rt.sessions, job_id, job_action)
        except jobs.JobConflict:  # ended already, or in a state the control does not apply to
            pass
    return {"id": campaign_id, "from": old, "state": str(row.state)}


def _replan_if_stale(rt: Runtime, campaign_id: int) -> None:
    """A campaign saved with no start is planned again from now when approved (its calendar said
    'from now' when it was made); one with a start keeps its calendar."""
    with rt.sessions() as session:
        row = get_campaign(session, campaign_id)
        request = MaintenancePlanRequest.model_validate(row.request)
        if row.state != JobState.PENDING or request.start is not None:
            return
    calendar = _planned(rt, request)
    with rt.sessions.begin() as session:
        row = get_campaign(session, campaign_id)
        row.calendar, row.progress = calendar, new_progress(calendar)


def list_campaigns(rt: Runtime, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first: id, state, nodes, groups done / total, predicted end."""
    with rt.sessions() as session:
        rows = session.scalars(select(CampaignRow).order_by(CampaignRow.id.desc()).limit(limit))
        return [{"id": r.id, "state": r.state, "nodes": r.nodes,
                 "done": sum(s["phase"] == "done" for s in r.progress), "steps": len(r.progress),
                 "predicted_end": r.calendar.get("predicted_end"), "message": r.message} for r in rows]


def _job_progress(session: Any, job_id: int | None) -> dict[str, Any]:
    if job_id is None:
        return {"job": None, "state": "nothing to move", "moves": 0, "done": 0}
    job = jobs.get_job(session, job_id)
    moves = list(session.scalars(select(MoveRow.state).where(MoveRow.job_id == job_id)))
    return {"job": job_id, "state": job.state, "moves": len(moves),
            "done": sum(m == MoveState.SUCCEEDED for m in moves), "final": job.state in JOB_FINAL}


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.replace(tzinfo=dt.UTC).isoformat() if moment is not None else None


def show_campaign(rt: Runtime, campaign_id: int) -> dict[str, Any]:
    """Everything about a campaign: per group its phase, the progress of its drain and restore
    jobs, its hooks, its predicted and actual ends; the campaign's predicted and actual end."""
    with rt.sessions() as session:
        row = get_campaign(session, campaign_id)
        steps = []
        for step in row.progress:
            steps.append({**step,
                          "drain": [{"node": n, **_job_progress(session, j)} for n, j in step["drain_jobs"].items()],
                          "restore": [{"node": n, **_job_progress(session, j)}
                                      for n, j in step["restore_jobs"].items()]})
        last = row.progress[-1] if row.progress else {}
        return {"id": row.id, "state": row.state, "nodes": row.nodes, "message": row.message,
                "created_at": _iso(row.created_at), "started_at": _iso(row.started_at),
                "finished_at": _iso(row.finished_at), "predicted_end": row.calendar.get("predicted_end"),
                "actual_end": last.get("ended_at") if row.state == JobState.SUCCEEDED else None,
                "problems": row.calendar.get("problems", []), "steps": steps}
