"""The lifecycle of jobs and moves in one place: states, their groups, the transitions a job may
take, and what the saga does at each step of a move. Everything else imports these names; a state
spelled as a quoted word anywhere else fails tests/unit/test_lifecycle.py.

    job (JOB_TRANSITIONS)
        pending --approve--> approved --start--> running --finish--> succeeded | failed | rolled_back
        operators: pause (approved, running -> paused), resume (-> approved), cancel (-> cancelling,
        which the engine finishes as cancelled); a closed window hands a running job back (-> approved)

    move (driven by service/saga.py)
        pending --> running --every step done--> succeeded (a failed cleanup: succeeded, phase pending)
        running --failed or cancelled--> rolling_back --> rolled_back | cancelled | failed
        pending --what it waits for did not succeed, or the job was cancelled--> skipped | cancelled
        pending --a higher-priority job took its container or reserved its destination--> yielded

    step (STEP_POLICY, by adapters.base.Step): compensable? holds a transfer slot? cancellable?
        on failure / on refusal: roll back, defer (the move stands, run it later) or fall back
        (FALLBACK: live -> restart -> dump)

The values are the words the store has always held, so existing databases and the Alembic
migration stay valid.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from adapters.base import STEPS, BackendError, Cancelled, Check, PermanentError, RefusedError, Step


class JobState(StrEnum):
    PENDING = "pending"  # planned, waiting for an operator's approval
    APPROVED = "approved"  # may run: the next engine (or ``ferry serve`` poll) takes it up
    RUNNING = "running"
    PAUSED = "paused"  # starts no new move; moves in flight finish
    CANCELLING = "cancelling"  # starts no new move; moves in flight roll back
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"  # nothing moved and nothing failed for good


class MoveState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    ROLLING_BACK = "rolling_back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # its rollback was impossible: the message says what to do by hand
    ROLLED_BACK = "rolled_back"
    SKIPPED = "skipped"  # a move it waits for (``after``) did not succeed
    CANCELLED = "cancelled"
    YIELDED = "yielded"  # before it started, a higher-priority job took its container (or its node)


class Phase(StrEnum):
    """Where the move's current ``step`` is: the store records it before and after each action."""

    STARTED = "started"  # acting, or died acting: on resume, observe, then call the step again
    DONE = "done"
    PENDING = "pending"  # only for cleanup: the move stands, cleanup is called again later


#: The ``step`` a progress callback receives when a move reached a final state.
PROGRESS_END = "done"

# -- groups ------------------------------------------------------------------------------------
JOB_FINAL: tuple[JobState, ...] = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED,
                                   JobState.ROLLED_BACK)
#: Jobs that hold their nodes: a second evacuate / drain of one of them is refused.
JOB_ACTIVE: tuple[JobState, ...] = (JobState.PENDING, JobState.APPROVED, JobState.RUNNING, JobState.PAUSED)
#: Jobs an engine takes up by itself (``ferry serve`` polls, ``ferry jobs resume``).
JOB_RUNNABLE: tuple[JobState, ...] = (JobState.APPROVED, JobState.RUNNING, JobState.CANCELLING)
#: Jobs moving forward: the ones a closed maintenance window or a shutdown holds.
JOB_ADVANCING: tuple[JobState, ...] = (JobState.APPROVED, JobState.RUNNING)
#: Approved and not final: someone may hold the job's lease.
JOB_UNFINISHED: tuple[JobState, ...] = (JobState.APPROVED, JobState.RUNNING, JobState.PAUSED,
                                        JobState.CANCELLING)

MOVE_FINAL: tuple[MoveState, ...] = (MoveState.SUCCEEDED, MoveState.FAILED, MoveState.ROLLED_BACK,
                                     MoveState.SKIPPED, MoveState.CANCELLED, MoveState.YIELDED)
#: Moves a saga is (or was, when its process died) driving: they hold resources, resume them first.
MOVE_IN_FLIGHT: tuple[MoveState, ...] = (MoveState.RUNNING, MoveState.ROLLING_BACK)
#: Moves that still have work to do.
MOVE_UNFINISHED: tuple[MoveState, ...] = (MoveState.PENDING, *MOVE_IN_FLIGHT)
#: Moves whose message explains a problem (a job's summary quotes them).
MOVE_PROBLEM: tuple[MoveState, ...] = (MoveState.FAILED, MoveState.ROLLED_BACK)


# -- job transitions ---------------------------------------------------------------------------
class JobEvent(StrEnum):
    """What changes a job's state: an operator's control, or the engine."""

    APPROVE = "approve"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    START = "start"  # an engine runs the job (or resumes it after a crash)
    HAND_BACK = "hand back"  # a closed window held it: back to approved for the next poll
    FINISH = "finish"  # every move is final: the moves decide the job's final state


@dataclass(frozen=True)
class Transition:
    sources: tuple[JobState, ...]
    targets: tuple[JobState, ...]
    #: The event in a refusal's words: "only a job that is ... can be <past>".
    past: str = ""


JOB_TRANSITIONS: dict[JobEvent, Transition] = {
    JobEvent.APPROVE: Transition((JobState.PENDING,), (JobState.APPROVED,), "approved"),
    JobEvent.PAUSE: Transition(JOB_ADVANCING, (JobState.PAUSED,), "paused"),
    JobEvent.RESUME: Transition((JobState.PAUSED, JobState.PENDING, *JOB_ADVANCING), (JobState.APPROVED,),
                                "resumed"),
    JobEvent.CANCEL: Transition(JOB_ACTIVE, (JobState.CANCELLING,), "cancelled"),
    JobEvent.START: Transition((*JOB_ADVANCING, JobState.PAUSED), (JobState.RUNNING,), "started"),
    JobEvent.HAND_BACK: Transition(JOB_ADVANCING, (JobState.APPROVED,), "handed back"),
    # A control that lands after the last move ended does not change what the moves did.
    JobEvent.FINISH: Transition(JOB_UNFINISHED, JOB_FINAL, "finished"),
}
#: The events an operator may ask for (CLI ``ferry job <control>``, REST ``POST /v1/jobs/ID/<control>``).
CONTROLS: tuple[JobEvent, ...] = (JobEvent.APPROVE, JobEvent.PAUSE, JobEvent.RESUME, JobEvent.CANCEL)


class IllegalTransition(ValueError):
    """A job state change the table does not allow; ``str()`` is the one-line reason."""


def job_transition(event: JobEvent | str, current: JobState | str,
                   to: JobState | str | None = None) -> JobState:
    """The state ``event`` takes a job in ``current`` to (``to`` picks one when the event has
    several, e.g. finish); raises IllegalTransition, worded for the operator, if it may not."""
    transition = JOB_TRANSITIONS[JobEvent(event)]
    target = JobState(to) if to is not None else transition.targets[0]
    if current not in transition.sources:
        allowed = " or ".join(transition.sources)
        raise IllegalTransition(f"is {current}; only a job that is {allowed} can be {transition.past}")
    if target not in transition.targets:
        raise IllegalTransition(f"cannot be {transition.past} as {target}")
    return target


def finished_job_state(move_states: Iterable[str], *, cancelled: bool) -> JobState:
    """The state a job's ``finish`` takes it to, decided by its moves' final states: succeeded
    when all moved, rolled_back when none moved and none failed for good, else failed. Moves
    yielded to a higher-priority job are that job's to make: they do not count here."""
    counts = Counter(move_states)
    counts.pop(MoveState.YIELDED, None)
    if cancelled:
        return JobState.CANCELLED
    if counts[MoveState.SUCCEEDED] == sum(counts.values()):
        return JobState.SUCCEEDED
    if counts[MoveState.SUCCEEDED] == 0 and counts[MoveState.FAILED] == 0:
        return JobState.ROLLED_BACK
    return JobState.FAILED


def job_event_for(current: JobState | str, new: JobState | str) -> JobEvent:
    """The event that explains a change from ``current`` to ``new``; IllegalTransition if none does."""
    for event, transition in JOB_TRANSITIONS.items():
        if current in transition.sources and new in transition.targets:
            return event
    raise IllegalTransition(f"a job that is {current} cannot become {new}")


# -- the steps of a move -----------------------------------------------------------------------
class OnFailure(StrEnum):
    ROLL_BACK = "roll back"  # undo every step so far: the source runs as before
    DEFER = "defer"  # the destination is verified: the move stands, the step runs again later
    FALL_BACK = "fall back"  # the method is refused: undo it, start over with the next method


class Cause(StrEnum):
    """Why a saga rolls a move back; decides the state it ends in."""

    FAILURE = "failure"
    CANCEL = "cancel"


#: The state a move ends in once its rollback is done, by cause.
ROLLED_BACK_STATE: dict[Cause, MoveState] = {Cause.FAILURE: MoveState.ROLLED_BACK,
                                             Cause.CANCEL: MoveState.CANCELLED}


@dataclass
class MoveOutcome:
    """How a saga left a move (service.saga.MoveSaga.run)."""

    ct: str
    state: MoveState
    message: str
    #: Why the move was rolled back, when it was (``None``: it was not).
    cause: Cause | None = None


@dataclass(frozen=True)
class StepPolicy:
    #: ``rollback`` undoes it (the source still exists and can take over again).
    compensable: bool
    #: It runs inside a transfer slot (source outgoing, target incoming, fleet; service/slots.py).
    holds_slot: bool
    #: What a failure (permanent, retries exhausted, cancelled during the step) leads to.
    on_failure: OnFailure
    #: What a refusal of the method (RefusedError) leads to.
    on_refusal: OnFailure
    #: An operator's cancel stops the move before (and, for long steps, during) this step.
    cancellable: bool

    def reaction(self, error: BackendError, method: str) -> OnFailure:
        """What the saga does when this step ends with ``error`` for a move by ``method``."""
        if isinstance(error, Cancelled) and self.cancellable:
            return OnFailure.ROLL_BACK
        action = self.on_refusal if isinstance(error, RefusedError) else self.on_failure
        if action is OnFailure.FALL_BACK and method not in FALLBACK:
            return OnFailure.ROLL_BACK
        return action


_ROLL, _DEFER, _FALL = OnFailure.ROLL_BACK, OnFailure.DEFER, OnFailure.FALL_BACK
STEP_POLICY: dict[Step, StepPolicy] = {
    #                          compensable  holds_slot  on_failure  on_refusal  cancellable
    Step.PREFLIGHT: StepPolicy(True,        False,      _ROLL,      _FALL,      True),
    Step.PREPARE: StepPolicy(True,          False,      _ROLL,      _FALL,      True),
    Step.PRESYNC: StepPolicy(True,          True,       _ROLL,      _FALL,      True),
    Step.CUTOVER: StepPolicy(True,          True,       _ROLL,      _FALL,      True),
    Step.VERIFY: StepPolicy(True,           False,      _ROLL,      _FALL,      True),
    # After verify the destination runs with the source's data: the move stands whatever happens.
    Step.CLEANUP: StepPolicy(False,         False,      _DEFER,     _DEFER,     False),
    # A restore from a backup (adapters.base.RESTORE_STEPS): its rollback removes the restored
    # copy (the source node is dead, nothing runs again there). Its cleanup waits for the dead
    # node to come back, to keep its stale copies stopped (deferred until then).
    Step.FENCE: StepPolicy(True,            False,      _ROLL,      _ROLL,      True),
    Step.RESTORE: StepPolicy(True,          True,       _ROLL,      _ROLL,      True),
    Step.START: StepPolicy(True,            False,      _ROLL,      _ROLL,      True),
}

#: Steps whose permanent failure says the destination cannot take the container (full disk, a
#: failed start, a copy that does not verify): the move is re-placed (service.replacement).
DESTINATION_STEPS: tuple[Step, ...] = (Step.PREPARE, Step.PRESYNC, Step.CUTOVER, Step.VERIFY)

#: The method to try when a backend refuses one: live -> restart needs no checkpoint or kernel
#: match; restart -> dump needs no direct node-to-node migration.
FALLBACK: dict[str, str] = {"live": "restart", "restart": "dump"}


def resume_index(step: str | None, phase: str | None, steps: Sequence[Step] = STEPS) -> int:
    """Index into ``steps`` (the move's sequence: STEPS, or RESTORE_STEPS for a restore) of the
    step a saga continues with, from the move's stored step and phase."""
    if step is None:
        return 0
    index = list(steps).index(Step(step))
    return index + 1 if phase == Phase.DONE else index


def raise_for_checks(checks: Sequence[Check], method: str) -> None:
    """The pre-flight's verdict: a failed check that blocks the move fails it (roll back); one
    that only rules out the live method refuses it (fall back to the next method)."""
    failed = [c for c in checks if not c.ok]
    blocking = [c for c in failed if c.blocks == "move"]
    if blocking:
        raise PermanentError("; ".join(f"{c.name}: {c.detail}" for c in blocking))
    if failed and method == "live":
        raise RefusedError("; ".join(f"{c.name}: {c.detail}" for c in failed))
