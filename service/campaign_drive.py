"""``ferry serve`` runs saved campaigns: one look per poll, level-triggered, from the store alone.

    every schedule.poll_s (a job of the worker's scheduler) on the leading instance --on_poll-->
      for each approved / running campaign, its first group not done:
        waiting     --node drain N --window (one job per node; a node already draining is adopted)--> draining
        draining    every drain job succeeded --> maintenance (a drain that did not: the campaign fails)
        maintenance hook_command: run in a thread, killed at hook_timeout_s, journaled in the drain
                    job; exit 0 --node restore N --window--> ; else the operator is notified and
                    restores by hand. No hook: the operator's 'ferry node restore N' is the "done"
                    (reminded after done_timeout_s). Every node restoring or back --> restoring
        restoring   every restore job succeeded --> done (notified); the next group starts; the
                    last one done: the campaign succeeded
      then campaigns awaiting approval and the notification sweep (service.notify.sweep) are told

Nothing lives only in this process but the threads of running hooks: a restart finds a hook that
was running and not finished, calls it interrupted (it is never run twice blindly: it may have
rebooted the node) and waits for the operator's restore, as after a failed hook.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from fleet.errors import InputError
from service import nodes as lifecycle
from service.campaign_hooks import HookResult, hook_argv, run_hook
from service.campaign_store import (
    CAMPAIGN_ACTIVE,
    CampaignRow,
    HookState,
    StepPhase,
    get_campaign,
    save_progress,
)
from service.jobs import add_journal, get_job
from service.lifecycle import JOB_FINAL, JobState
from service.notify import Notice, NotifyEvent, notify, sweep
from service.operations import nodes as node_ops
from service.runtime import Runtime
from service.store import utcnow

log = logging.getLogger("ferry.campaigns")
Clock = Callable[[], dt.datetime]

#: Hooks running in this process, by (campaign, node).
_HOOKS: dict[tuple[int, str], threading.Thread] = {}
_HOOKS_LOCK = threading.Lock()


def on_poll(worker: Any) -> None:
    """What a poll of ``ferry serve`` does besides running jobs: advance campaigns, tell events.
    Errors are logged, never raised: the poll must go on running jobs."""
    if worker.stopping or not worker.leadership.try_lead():
        return
    rt = worker.runtime
    try:
        drive_campaigns(rt, worker.clock)
    except Exception:  # a campaign's mistake must not stop the jobs: say it, retry on the next poll
        log.exception("campaigns: the drive stopped on an unexpected error")
    try:
        _tell_pending(rt)
        sweep(rt)
    except Exception:
        log.exception("notifications: the sweep stopped on an unexpected error")


def _tell_pending(rt: Runtime) -> None:
    with rt.sessions() as session:
        pending = list(session.scalars(select(CampaignRow).where(CampaignRow.state == JobState.PENDING)))
    for row in pending:
        notify(rt, Notice(f"campaign:{row.id}:pending", NotifyEvent.AWAITING_APPROVAL,
                          f"ferry: campaign {row.id} ({', '.join(row.nodes)}) awaits approval",
                          f"Review it with 'ferry maintenance show {row.id}', approve with "
                          f"'ferry maintenance approve {row.id}' (predicted end {row.calendar.get('predicted_end')})."))


def drive_campaigns(rt: Runtime, clock: Clock) -> None:
    with rt.sessions() as session:
        ids = list(session.scalars(select(CampaignRow.id).where(CampaignRow.state.in_(CAMPAIGN_ACTIVE))
                                   .order_by(CampaignRow.id)))
    for campaign_id in ids:
        advance(rt, campaign_id, clock)


def advance(rt: Runtime, campaign_id: int, clock: Clock) -> None:
    """Move the campaign's current group on as far as the world allows now."""
    with rt.sessions.begin() as session:
        row = get_campaign(session, campaign_id)
        if row.state not in CAMPAIGN_ACTIVE:
            return
        if row.state == JobState.APPROVED:
            row.state, row.started_at = JobState.RUNNING, row.started_at or utcnow()
        progress = [dict(s) for s in row.progress]
    for index, step in enumerate(progress):
        if step["phase"] == StepPhase.DONE:
            continue
        before = step["phase"]
        try:
            failure = PHASES[StepPhase(before)](rt, campaign_id, index, step, clock)
        except InputError as exc:  # a node's state or another job refuses the drain or the restore
            failure = exc.line()
        _store_step(rt, campaign_id, index, step, failure)
        if failure is None and step["phase"] != before:
            advance(rt, campaign_id, clock)  # the next phase may be possible at once
        return
    _finish(rt, campaign_id, JobState.SUCCEEDED, "every group is back")


def _now(clock: Clock) -> str:
    return clock().astimezone(dt.UTC).isoformat()


def _store_step(rt: Runtime, campaign_id: int, index: int, step: dict[str, Any], failure: str | None) -> None:
    with rt.sessions.begin() as session:
        row = get_campaign(session, campaign_id)
        progress = [dict(s) for s in row.progress]
        fresh = progress[index]
        fresh.update({k: v for k, v in step.items() if k != "hooks"})
        fresh["hooks"] = {**fresh.get("hooks", {}), **{n: h for n, h in step["hooks"].items()
                                                       if h.get("state") != HookState.RUNNING or n not in fresh["hooks"]}}
        save_progress(row, progress)
    if failure is not None:
        _finish(rt, campaign_id, JobState.FAILED, failure)


def _finish(rt: Runtime, campaign_id: int, state: JobState, message: str) -> None:
    with rt.sessions.begin() as session:
        row = get_campaign(session, campaign_id)
        if row.state not in CAMPAIGN_ACTIVE:  # an operator paused or cancelled it meanwhile: theirs stands
            return
        row.state, row.message, row.finished_at = state, message, utcnow()
    notify(rt, Notice(f"campaign:{campaign_id}:{state}", NotifyEvent.STEP_DONE if state == JobState.SUCCEEDED
                      else NotifyEvent.JOB_FAILED, f"ferry: campaign {campaign_id} {state}", message))


# -- the phases: each returns None, or why the campaign fails -------------------------------------
def _waiting(rt: Runtime, campaign_id: int, index: int, step: dict[str, Any], clock: Clock) -> str | None:
    with rt.sessions() as session:
        states = lifecycle.read_states(session)
        adopted = {n: states[n].job_id for n in step["nodes"]
                   if n in states and states[n].state == lifecycle.NodeState.DRAINING}
    jobs = dict(step["drain_jobs"])
    for node in step["nodes"]:
        if node in jobs:
            continue
        if node in adopted:  # a drain this campaign made before a restart, or an operator's
            jobs[node] = adopted[node]
            continue
        jobs[node] = node_ops.drain_node(rt, node, node_ops.NodeDrainRequest(approve=True, window=True)).job_id
        step["drain_jobs"] = jobs  # recorded node by node: a failure after one drain keeps it
        _store_step(rt, campaign_id, index, step, None)
    step.update(drain_jobs=jobs, phase=StepPhase.DRAINING.value, started_at=step["started_at"] or _now(clock))
    return None


def _jobs_ended(rt: Runtime, step: dict[str, Any], kind: str) -> tuple[bool, str | None]:
    """Whether the group's drain / restore jobs all ended, and why the campaign fails if one did
    not succeed (a node with nothing to move has no job: it succeeded)."""
    job_ids: dict[str, int | None] = step[f"{kind}_jobs"]
    with rt.sessions() as session:
        states = {n: (get_job(session, j).state if j is not None else JobState.SUCCEEDED) for n, j in job_ids.items()}
    if not all(s in JOB_FINAL for s in states.values()):
        return False, None
    bad = [n for n, s in states.items() if s != JobState.SUCCEEDED]
    return True, f"the {kind} of {bad[0]} ended {states[bad[0]]} (job {job_ids[bad[0]]})" if bad else None


def _draining(rt: Runtime, campaign_id: int, index: int, step: dict[str, Any], clock: Clock) -> str | None:
    ended, failure = _jobs_ended(rt, step, "drain")
    if not ended or failure:
        return failure
    node_states = lifecycle.stored_states(rt.sessions)
    for node in step["nodes"]:
        row = node_states.get(node)
        if row is None or row.state != lifecycle.NodeState.MAINTENANCE:
            return f"the drain of {node} did not empty it: {row.message if row else 'it is active'}"
    step.update(phase=StepPhase.MAINTENANCE.value, drained_at=_now(clock))
    return None


def _maintenance(rt: Runtime, campaign_id: int, index: int, step: dict[str, Any], clock: Clock) -> str | None:
    node_states = lifecycle.stored_states(rt.sessions)
    restores = dict(step["restore_jobs"])
    for node in step["nodes"]:
        row = node_states.get(node)
        if node in restores:
            continue
        if row is None or row.state == lifecycle.NodeState.RESTORING:  # restored, by ferry or by hand
            restores[node] = row.job_id if row is not None else None
            continue
        hook = _hook_step(rt, campaign_id, step, node, clock)
        if hook == HookState.OK:
            restores[node] = node_ops.restore_node(rt, node, node_ops.NodeRestoreRequest(approve=True, window=True)).job_id
            step["restore_jobs"] = restores
            _store_step(rt, campaign_id, index, step, None)
    step["restore_jobs"] = restores
    if all(n in restores for n in step["nodes"]):
        step.update(phase=StepPhase.RESTORING.value, restore_at=_now(clock))
    return None


def _restoring(rt: Runtime, campaign_id: int, index: int, step: dict[str, Any], clock: Clock) -> str | None:
    ended, failure = _jobs_ended(rt, step, "restore")
    if not ended or failure:
        return failure
    step.update(phase=StepPhase.DONE.value, ended_at=_now(clock))
    group = ",".join(step["nodes"])
    notify(rt, Notice(f"campaign:{campaign_id}:step:{index}", NotifyEvent.STEP_DONE,
                      f"ferry: campaign {campaign_id}: {group} maintained and back",
                      f"Group {index + 1} ({group}) drained at {step['drained_at']}, back at {step['ended_at']} "
                      f"(predicted {step['predicted']['restore_end']})."))
    return None


PHASES = {StepPhase.WAITING: _waiting, StepPhase.DRAINING: _draining, StepPhase.MAINTENANCE: _maintenance,
          StepPhase.RESTORING: _restoring}


# -- the hook of one node --------------------------------------------------------------------------
def _hook_step(rt: Runtime, campaign_id: int, step: dict[str, Any], node: str, clock: Clock) -> str:
    """The hook's state for ``node`` after this look (HookState): ok means restore it now."""
    config = rt.config.maintenance
    hooks = step["hooks"]
    hook = hooks.setdefault(node, {"state": HookState.TO_RUN if config.hook_command else HookState.AWAITING_RESTORE,
                                   "since": _now(clock)})
    if hook["state"] == HookState.TO_RUN:
        hook.update(state=HookState.RUNNING.value, since=_now(clock))
        _start_hook(rt, campaign_id, step, node)
    elif hook["state"] == HookState.RUNNING and not _hook_alive(campaign_id, node):
        hook.update(state=HookState.INTERRUPTED.value, ended=_now(clock))
        _tell_hook(rt, campaign_id, node, HookState.INTERRUPTED, "had its hook interrupted by a restart of ferry "
                   "(a hook is never run twice)")
    if hook["state"] == HookState.AWAITING_RESTORE:
        waited = (clock() - dt.datetime.fromisoformat(hook["since"])).total_seconds()
        if waited > config.done_timeout_s:
            _tell_hook(rt, campaign_id, node, "late", f"is not restored {waited:.0f} s after its drain")
    return hook["state"]


def _hook_alive(campaign_id: int, node: str) -> bool:
    with _HOOKS_LOCK:
        thread = _HOOKS.get((campaign_id, node))
        return thread is not None and thread.is_alive()


def _start_hook(rt: Runtime, campaign_id: int, step: dict[str, Any], node: str) -> None:
    argv = hook_argv(rt.config.maintenance.hook_command, node)
    drain_job = step["drain_jobs"].get(node)
    thread = threading.Thread(target=_run_hook_thread, name=f"hook-{campaign_id}-{node}", daemon=True,
                              args=(rt, campaign_id, node, argv, drain_job))
    with _HOOKS_LOCK:
        _HOOKS[(campaign_id, node)] = thread
    thread.start()


def _run_hook_thread(rt: Runtime, campaign_id: int, node: str, argv: list[str], drain_job: int | None) -> None:
    result = run_hook(argv, rt.config.maintenance.hook_timeout_s)
    if drain_job is not None:
        add_journal(rt.sessions, drain_job, None, "hook", result.entry(argv))
    _record_hook(rt, campaign_id, node, result)
    if not result.ok:
        why = "timed out and was killed" if result.status is None else f"exited {result.status}"
        _tell_hook(rt, campaign_id, node, HookState.FAILED, f"had its hook {why}: {result.output.strip()[-200:]}")


def _record_hook(rt: Runtime, campaign_id: int, node: str, result: HookResult) -> None:
    with rt.sessions.begin() as session:
        row = get_campaign(session, campaign_id)
        progress = [dict(s) for s in row.progress]
        for step in progress:
            if node in step["nodes"] and step["phase"] == StepPhase.MAINTENANCE \
                    and step["hooks"].get(node, {}).get("state") in (None, HookState.RUNNING):  # not called interrupted
                hooks = dict(step["hooks"])
                hooks[node] = {**hooks.get(node, {}), "state": (HookState.OK if result.ok else HookState.FAILED).value,
                               "exit": result.status, "duration_s": round(result.duration_s, 3),
                               "ended": dt.datetime.now(dt.UTC).isoformat()}
                step["hooks"] = hooks
        save_progress(row, progress)


def _tell_hook(rt: Runtime, campaign_id: int, node: str, kind: str, what: str) -> None:
    notify(rt, Notice(f"campaign:{campaign_id}:hook:{node}:{kind}", NotifyEvent.HOOK,
                      f"ferry: campaign {campaign_id}: node {node} needs an operator",
                      f"Node {node} {what}. Patch it, then run 'ferry node restore {node}'."))
