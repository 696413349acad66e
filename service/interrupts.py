"""What Ctrl-C does to a job run in the foreground (``ferry evacuate``, ``drain``, ``job resume``…).

An operator who presses Ctrl-C wants the job to stop, not half a move. The first SIGINT pauses the
job through the store, exactly as ``ferry job pause`` would: moves in flight finish their current
step (a container is never left stopped between dump and restore because a key was pressed), no
new move starts, and the command ends with the paused job's exit status (5) and the line saying how
to resume it. A second SIGINT leaves at once (exit 130) without waiting: the moves then in flight
are what a crash would leave, and a resume takes them up through observe-then-act once this
process's lease has run out.

The store write runs on a short thread, never inside the handler: the handler interrupts the main
thread at an arbitrary point, possibly inside its own store transaction.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from fleet.errors import InputError
from service import jobs
from service.runtime import Runtime

#: The conventional exit status of a program stopped by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def pause_on_interrupt(rt: Runtime, job_id: int, say: Callable[[str], None] = _stderr) -> Iterator[None]:
    """While the block runs job ``job_id`` in this process, Ctrl-C pauses it (twice: leave now).

    Outside the main thread (signal handlers can only be set there) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = 0

    def pause() -> None:
        try:
            jobs.control_job(rt.sessions, job_id, "pause")
        except InputError as exc:  # e.g. already cancelling or ended: nothing to pause
            say(f"ferry: job {job_id} not paused: {exc.line()}")
        except Exception as exc:  # the store could not be reached: the job simply goes on
            say(f"ferry: job {job_id} not paused ({type(exc).__name__}); 'ferry job pause {job_id}' "
                "from another shell, or Ctrl-C again to leave now")

    def on_sigint(_signum: int, _frame: object) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            say(f"ferry: pausing job {job_id}: moves in flight finish their step, no new move starts "
                "(Ctrl-C again to leave now)")
            threading.Thread(target=pause, name="pause-on-interrupt", daemon=True).start()
            return
        say(f"ferry: left job {job_id} with its moves in flight; 'ferry job resume {job_id}' takes them "
            f"up once this process's lease ({rt.config.engine.lease_s:g} s) has run out")
        os._exit(EXIT_INTERRUPTED)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
