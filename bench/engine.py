"""Engine benchmark: evacuate a node of 1,000 containers in the simulator, on a virtual clock.

The simulator and the engine's waits run on :class:`adapters.clock.VirtualClock`: simulated time
passes only when every thread of the run waits, and nothing sleeps, so the makespan is a property
of the scheduling alone (the same on a quiet and on a loaded machine; the wall time is not).

Figures:
- the simulated makespan against its lower bound: bytes leaving the source over the source NIC's
  bandwidth (the source sends at most ``max_outgoing_per_node`` moves at once, and they share its
  NIC, so no schedule can beat that figure). The bar is 1.05x;
- the engine's own store work per step (ms): reading and writing the move's row before and after
  each step, its journal entries, ending the move (its final row, its container's lock, its link
  figure), divided by the steps run; the pool's pings count too; wall time and the calling
  thread's CPU time (on PostgreSQL the server's work shows in the wall figure only). The clock
  runs one thread at a time, so the figure holds no waiting for another thread's transaction.
  On SQLite, and on PostgreSQL when its server binaries are installed (a throwaway cluster,
  ``tests/doubles/postgres_cluster.py``). Its baseline, measured on the same database in the same
  run: one bare write transaction (begin, a one-row UPDATE, commit; the median of 15 batches);
  "x bare" is the step's store CPU time in such transactions, which the machine's load moves
  less than the ms. ``python -m bench.engine quick`` runs every row on 40 moves.

Baseline in the same run: the engine without transfer slots (a move holds its node's slot from
preflight to cleanup, as a plain "N moves per node" limit does), on 300 containers: its ratio to
the same bound shows what overlapping checks with copies buys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import update

from adapters.base import Backend, MoveSpec, StepContext
from adapters.clock import VirtualClock
from fleet.policy import Policy
from planners import plan_evacuate
from service import engine as engine_module
from service import saga
from service.config import Config, EngineSection, FerrySection
from service.jobs import create_job
from service.lifecycle import STEP_POLICY, JobState
from service.runtime import Runtime
from service.store import JobRow, utcnow

NIC_MB_S = 1250.0
#: On the virtual clock this only sets the simulator's progress slice (0.05 x speedup = 5 simulated s).
SPEEDUP = 100.0


def fleet_file(folder: Path, count: int, seed: int = 5) -> Path:
    rng = random.Random(seed)
    containers = [{"id": str(10000 + i), "node": "src", "cpus": 1, "memory_mb": 1024,
                   "disk_gb": rng.choice([4, 8, 16, 32]), "storage": "local", "ips": [f"10.{i // 250}.{i % 250}.1"],
                   "dirty_mb_per_s": rng.choice([0.0, 1.0, 4.0])} for i in range(count)]
    used = sum(c["disk_gb"] for c in containers)
    nodes = [{"name": "src", "cpus": 4096, "memory_mb": 1024 * count, "kernel": "6.8", "nic_mb_s": NIC_MB_S,
              "storage": {"local": {"total_gb": used * 2, "used_gb": used}}}]
    nodes += [{"name": f"dst{i}", "cpus": 4096, "memory_mb": 1024 * count, "kernel": "6.8", "nic_mb_s": NIC_MB_S,
               "storage": {"local": {"total_gb": used * 2, "used_gb": 0}}} for i in range(8)]
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "nodes": nodes, "containers": containers}))
    return path


class TimedBackend(Backend):
    """Wraps a backend and adds up the wall time spent inside its step calls."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.inside = 0.0
        self.steps = 0
        self._lock = threading.Lock()

    def _timed(self, name: str, spec: MoveSpec, ctx: StepContext) -> Any:
        started = time.perf_counter()
        try:
            return getattr(self.inner, name)(spec, ctx)
        finally:
            with self._lock:
                self.inside += time.perf_counter() - started
                self.steps += 1

    def discover(self) -> Any:
        return self.inner.discover()

    def observe(self, spec: MoveSpec) -> Any:
        return self.inner.observe(spec)

    def refusals(self, spec: MoveSpec) -> dict[str, str]:
        return self.inner.refusals(spec)

    def now(self) -> float:
        return self.inner.now()

    def preflight(self, spec: MoveSpec, ctx: StepContext) -> Any:
        return self._timed("preflight", spec, ctx)

    def prepare(self, spec: MoveSpec, ctx: StepContext) -> Any:
        return self._timed("prepare", spec, ctx)

    def presync(self, spec: MoveSpec, ctx: StepContext) -> Any:
        return self._timed("presync", spec, ctx)

    def cutover(self, spec: MoveSpec, ctx: StepContext) -> Any:
        return self._timed("cutover", spec, ctx)

    def verify(self, spec: MoveSpec, ctx: StepContext) -> Any:
        return self._timed("verify", spec, ctx)

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> Any:
        return self._timed("cleanup", spec, ctx)

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> Any:
        return self._timed("rollback", spec, ctx)


class StoreTimer:
    """Adds up the wall and CPU time the engine spends on its own store work: reading and writing
    the move's row before and after each step, ending the move, its journal entries and its link
    figure. A call made inside another timed call (the end's row write) counts once."""

    #: The saga's store calls: functions it imports, and its methods.
    FUNCTIONS = ("add_journal", "learn_link")
    METHODS = ("_update", "_move", "_end")

    def __init__(self) -> None:
        self.total = 0.0
        self.cpu = 0.0
        self._lock = threading.Lock()
        self._depth = threading.local()

    def _wrap(self, func: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._depth, "n", 0)
            self._depth.n = depth + 1
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                self._depth.n = depth
                if depth == 0:
                    with self._lock:
                        self.total += time.perf_counter() - started
                        self.cpu += time.thread_time() - cpu
        return timed

    @contextlib.contextmanager
    def installed(self) -> Any:
        owners = [(saga, name) for name in self.FUNCTIONS] + [(saga.MoveSaga, name) for name in self.METHODS]
        originals = [(owner, name, getattr(owner, name)) for owner, name in owners]
        for owner, name, func in originals:
            setattr(owner, name, self._wrap(func))
        try:
            yield self
        finally:
            for owner, name, func in originals:
                setattr(owner, name, func)


@contextlib.contextmanager
def _whole_move_slots(enabled: bool) -> Any:
    """Baseline: every step holds the transfer slot, so the limit counts whole moves."""
    saved = dict(STEP_POLICY)
    if enabled:
        STEP_POLICY.update({step: dataclasses.replace(policy, holds_slot=True) for step, policy in saved.items()})
    try:
        yield
    finally:
        STEP_POLICY.update(saved)


def bare_write_ms(rt: Runtime, job_id: int, batches: int = 15, count: int = 100) -> tuple[float, float]:
    """The store figures' baseline: wall and CPU ms of one bare write transaction on the store
    the run used (begin, a one-row UPDATE of the job, commit), the median over ``batches`` of
    ``count`` (a median, as other processes' bursts land in some batches)."""
    statement = update(JobRow.__table__).where(JobRow.__table__.c.id == job_id)
    walls, cpus = [], []
    for _ in range(batches):
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(count):
            with rt.sessions.begin() as session:
                session.execute(statement, {"updated_at": utcnow()})
        walls.append((time.perf_counter() - wall) / count * 1000)
        cpus.append((time.thread_time() - cpu) / count * 1000)
    return statistics.median(walls), statistics.median(cpus)


def run_once(count: int, outgoing: int, *, slots: bool = True, database: str | None = None) -> dict[str, float]:
    """One evacuation on a virtual clock (``database``: the store's URL; default SQLite)."""
    folder = Path(tempfile.mkdtemp(prefix="ferry-bench-engine-"))
    policy = Policy(max_parallel=8, max_outgoing_per_node=outgoing, default_link_mb_s=NIC_MB_S)  # a plan shares it
    config = Config(ferry=FerrySection(backend="sim", state_dir=str(folder / "state"), database=database or ""),
                    policy=policy,
                    engine=EngineSection(retry_initial_s=0.01, retry_max_s=0.05),
                    sim={"fleet_file": str(fleet_file(folder, count)), "speedup": SPEEDUP,
                         "world_file": str(folder / "state" / "world.json")})
    rt = Runtime(config)
    clock = VirtualClock()  # this thread runs the engine: the clock's first participant
    rt.backend.clock = clock
    inv = rt.backend.discover()
    plan = plan_evacuate(inv, ["src"], policy)
    timed = TimedBackend(rt.backend)
    rt.__dict__["backend"] = timed
    job_id = create_job(rt.sessions, plan, approved=True)
    store_time = StoreTimer()
    engine = rt.engine()
    engine.clock = clock
    with store_time.installed(), _whole_move_slots(not slots):
        wall = time.perf_counter()
        summary = engine.run_job(job_id)
        wall = time.perf_counter() - wall
    bound = sum(c.disk_gb for c in inv.containers) * 1024 / NIC_MB_S
    steps = max(1, timed.steps)
    bare_wall_ms, bare_cpu_ms = bare_write_ms(rt, job_id)
    return {"state": summary.state, "moves": len(plan.moves), "makespan_s": summary.makespan_s,
            "bound_s": bound, "ratio": summary.makespan_s / bound, "overhead_ms": store_time.total / steps * 1000,
            "cpu_ms": store_time.cpu / steps * 1000, "wall_s": wall,
            "bare_wall_ms": bare_wall_ms, "bare_cpu_ms": bare_cpu_ms, "predicted_s": plan.score.predicted_makespan_s}


@contextlib.contextmanager
def postgresql() -> Any:
    """A function (name) -> URL of a fresh database on a throwaway cluster, or None without one."""
    from tests.doubles.postgres_cluster import find_bin, postgres_cluster
    from tests.integration.concurrency.databases import fresh_database

    if not (find_bin("initdb") and find_bin("pg_ctl")):
        yield None
        return
    with postgres_cluster() as url:
        yield lambda name: fresh_database(url, name)


def main(count: int = 1000, pg_count: int = 300, base_count: int = 300) -> None:
    """The full run (``make bench``); ``python -m bench.engine quick``: every run on 40 moves."""
    print(f"evacuate a node (NIC {NIC_MB_S:.0f} MB/s, 2 moves out at a time), virtual clock")
    print(f"{'run':<40}{'moves':>6}{'makespan s':>11}{'bound s':>9}{'ratio':>7}{'predicted s':>12}"
          f"{'store ms/step':>14}{'CPU ms/step':>12}{'bare CPU ms':>12}{'x bare':>7}{'wall s':>8}")
    with postgresql() as pg:
        runs = [("baseline: moves hold their slot", base_count, 1, None), ("ferry: transfer slots", base_count, 2, None),
                ("ferry: transfer slots", count, 2, None)]
        if pg is not None:
            runs.append(("ferry: transfer slots, PostgreSQL", pg_count, 2, pg("bench_engine")))
        for label, n, depth, database in runs:
            saved, engine_module.ADMISSION_DEPTH = engine_module.ADMISSION_DEPTH, depth
            try:
                r = run_once(n, 2, slots=depth > 1, database=database)
            finally:
                engine_module.ADMISSION_DEPTH = saved
            assert r["state"] == JobState.SUCCEEDED, r
            print(f"{label:<40}{r['moves']:>6}{r['makespan_s']:>11.0f}{r['bound_s']:>9.0f}{r['ratio']:>7.3f}"
                  f"{r['predicted_s']:>12.0f}{r['overhead_ms']:>14.2f}{r['cpu_ms']:>12.2f}{r['bare_cpu_ms']:>12.3f}"
                  f"{r['cpu_ms'] / r['bare_cpu_ms']:>7.1f}{r['wall_s']:>8.1f}",
                  flush=True)
        if pg is None:
            print("(no PostgreSQL server binaries here: the PostgreSQL row is left out)")


if __name__ == "__main__":
    import sys

    main(*([40, 40, 40] if sys.argv[1:] == ["quick"] else []))
