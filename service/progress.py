"""Live progress of a running job: one bar for the job, one per move in flight (Rich).

The engine calls :meth:`JobProgress.update` from its move threads; Rich's Progress is thread-safe.
"""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from service.lifecycle import PROGRESS_END


class JobProgress:
    def __init__(self, console: Console, total_moves: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<28}", markup=False), BarColumn(), DownloadColumn(binary_units=True),
            TimeElapsedColumn(), console=console, transient=False,
        )
        self.overall = self.progress.add_task("all moves", total=total_moves)
        self._moves: dict[str, TaskID] = {}
        self._finished: set[str] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> JobProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, ct: str, step: str, done: int, total: int) -> None:
        """Called by the engine; step ``done`` means the move reached a final state."""
        if step == PROGRESS_END:
            self.finished(ct)
            return
        with self._lock:
            task = self._moves.get(ct)
            if task is None:
                task = self.progress.add_task(f"{ct} {step}", total=max(total, 1))
                self._moves[ct] = task
        self.progress.update(task, description=f"{ct} {step}", completed=done, total=max(total, 1))

    def finished(self, ct: str) -> None:
        with self._lock:
            if ct in self._finished:
                return
            self._finished.add(ct)
            task = self._moves.pop(ct, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.advance(self.overall)
