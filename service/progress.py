"""Live progress of a running job: one bar for the job, one per move in flight (Rich).

    all moves              ━━━━━━━╸━━━━━━━━━━━━ 3/8 moves  0:01:12
    101 precopy            ━━━━━━━━━━╸━━━━━━━━━ 1.2/4.0 GiB 350 MB/s ETA 0:00:08

The job's bar counts moves (a move that ended, however it ended, is one step); a move's bar counts
its bytes and says the rate and the time left at that rate, both from Rich's own samples. The rows
fit 80 columns. The engine calls :meth:`JobProgress.update` from its move threads; Rich's Progress
is thread-safe.
"""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Column
from rich.text import Text

from service.lifecycle import PROGRESS_END

GIB = 1024**3
MB = 1000**2


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class FiguresColumn(ProgressColumn):
    """``3/8 moves 0:01:12`` (elapsed) for the job's bar; ``1.2/4.0 GiB 350 MB/s ETA 0:00:08`` for a move's."""

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "moves":
            return Text(f"{task.completed:.0f}/{task.total or 0:.0f} moves  {_clock(task.elapsed)}")
        rate = task.speed
        figures = f"{task.completed / GIB:.1f}/{(task.total or 0) / GIB:.1f} GiB"
        if rate:
            figures += f" {rate / MB:.0f} MB/s ETA {_clock(task.time_remaining)}"
        return Text(figures, no_wrap=True, overflow="ellipsis")


class JobProgress:
    def __init__(self, console: Console, total_moves: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}", markup=False,
                       table_column=Column(min_width=12, max_width=22, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=20), FiguresColumn(table_column=Column(no_wrap=True)), console=console,
            transient=False,
            speed_estimate_period=10.0,
        )
        self.overall = self.progress.add_task("all moves", total=total_moves, unit="moves")
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
            if ct in self._finished:
                return
            task = self._moves.get(ct)
            if task is None:
                task = self.progress.add_task(f"{ct} {step}", total=max(total, 1), unit="bytes")
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
