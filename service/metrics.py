"""Prometheus metrics, computed from the job store at scrape time.

    GET /metrics --> registry (one per app) --> StoreCollector.collect() --> SQL over jobs / moves /
                                                                             journal --> metric families

Nothing is counted in process memory: every figure is read from the store when Prometheus scrapes,
so several ferry instances sharing one database report the same numbers, and a restart loses none.
Families follow the exposition conventions of prometheus-client's custom collectors
(https://prometheus.github.io/client_python/collector/custom/).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session, sessionmaker

from service.jobs import lease_holder
from service.lifecycle import JOB_UNFINISHED, JobState, MoveState
from service.nodes import node_state_metric
from service.store import JobRow, JournalRow, MoveRow

#: Upper bounds (seconds) of the move duration histogram: from a quick live move to a long dump.
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


def _by_state(name: str, doc: str, states: type[JobState] | type[MoveState],
              counts: Counter[str]) -> GaugeMetricFamily:
    """Every known state gets a sample (0 included), so dashboards see a series from the start."""
    family = GaugeMetricFamily(name, doc, labels=["state"])
    for state in sorted(set(states) | set(counts)):
        family.add_metric([str(state)], counts.get(state, 0))
    return family


def duration_histogram(durations: list[float]) -> HistogramMetricFamily:
    buckets = [(f"{bound:g}", sum(1 for d in durations if d <= bound)) for bound in DURATION_BUCKETS]
    buckets.append(("+Inf", len(durations)))
    return HistogramMetricFamily("ferry_move_duration_seconds",
                                 "Observed duration of succeeded moves (world clock).",
                                 buckets=buckets, sum_value=sum(durations))


class StoreCollector(Collector):
    """Reads the job store on every scrape; ``owner`` is this instance's name in job leases."""

    def __init__(self, sessions: sessionmaker[Session], owner: str) -> None:
        self.sessions = sessions
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        with self.sessions() as session:
            yield from self._job_metrics(session)
            yield from self._move_metrics(session)
            yield from self._journal_metrics(session)
            yield node_state_metric(session)

    def _job_metrics(self, session: Session) -> Iterator[Metric]:
        jobs = list(session.scalars(select(JobRow)))
        yield _by_state("ferry_jobs", "Jobs in the store, by state.", JobState, Counter(j.state for j in jobs))
        live = [j for j in jobs if j.state in JOB_UNFINISHED]  # a finished job keeps its last owner
        holders = Counter(h for h in (lease_holder(j) for j in live) if h)
        held = GaugeMetricFamily("ferry_engine_lease_held",
                                 "1 while this instance holds the lease of a running job.")
        held.add_metric([], 1 if holders.get(self.owner) else 0)
        yield held
        leases = GaugeMetricFamily("ferry_job_leases", "Live job leases, by the instance holding them.",
                                   labels=["owner"])
        for owner, count in sorted(holders.items()):
            leases.add_metric([owner], count)
        yield leases
        finished = [j.finished_at for j in jobs if j.state == JobState.SUCCEEDED and j.finished_at]
        last = GaugeMetricFamily("ferry_last_successful_job_timestamp_seconds",
                                 "Unix time the newest succeeded job finished (0: none yet).")
        last.add_metric([], max(finished).replace(tzinfo=dt.UTC).timestamp() if finished else 0.0)
        yield last

    def _move_metrics(self, session: Session) -> Iterator[Metric]:
        rows = session.execute(select(MoveRow.state, MoveRow.figures)).all()
        yield _by_state("ferry_moves", "Moves in the store, by state.", MoveState,
                        Counter(state for state, _ in rows))
        done = [figures or {} for state, figures in rows if state == MoveState.SUCCEEDED]
        yield duration_histogram([float(f.get("duration_s", 0.0)) for f in done])
        moved = CounterMetricFamily("ferry_moved_bytes", "Bytes copied by succeeded moves.")
        moved.add_metric([], sum(int(f.get("bytes", 0)) for f in done))
        yield moved

    def _journal_metrics(self, session: Session) -> Iterator[Metric]:
        # Journal events are JSON strings: '"retrying presync: ..."' in the column's text form.
        def events(prefix: str) -> int:
            text = cast(JournalRow.what, String)
            query = select(func.count()).where(JournalRow.kind == "event", text.like(f'"{prefix}%'))
            return int(session.scalar(query) or 0)

        retries = CounterMetricFamily("ferry_step_retries", "Step attempts retried after a transient failure.")
        retries.add_metric([], events("retrying"))
        yield retries
        rollbacks = CounterMetricFamily("ferry_rollbacks", "Moves compensated (rolled back), any cause.")
        rollbacks.add_metric([], events("rolling back"))
        yield rollbacks


def store_registry(sessions: sessionmaker[Session], owner: str) -> CollectorRegistry:
    """A registry of its own per app, so that two apps (or two tests) never share figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(sessions, owner))
    return registry
