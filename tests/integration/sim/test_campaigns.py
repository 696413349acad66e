"""Rolling maintenance calendars (service.campaigns): every move inside a window with its x1.25
margin, at most max_out nodes out at once, every container back home, the same on both surfaces."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from fleet.policy import Policy
from fleet.snapshot import load_inventory
from service.campaign_run import run_campaign
from service.campaigns import (
    Calendar,
    MaintenancePlanRequest,
    campaign_windows,
    plan_campaign,
    plan_maintenance,
)
from service.config import load_config
from service.nodes import stored_states
from service.runtime import Runtime
from service.schedule import MaintenanceWindows, parse_windows
from service.worker import WINDOW_MARGIN
from tests.conftest import REPO, sim_config
from tests.integration.sim.test_api import client_for
from tests.integration.sim.test_cli import assert_one_line_error, ferry, write_config

DEMO = REPO / "config" / "fleets" / "demo.yaml"
MONDAY = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)
WINDOWS = ["daily 01:00 for 2h"]


def calendar(max_out: int = 1, nodes: tuple[str, ...] = ("n3", "n4", "n5", "n6")) -> Calendar:
    windows = MaintenanceWindows([w for t in WINDOWS for w in parse_windows(t)])
    return plan_campaign(load_inventory(DEMO), list(nodes), Policy(), windows, start=MONDAY, max_out=max_out,
                         maintenance_s=1800.0)


def inside_a_window(start: dt.datetime, seconds: float) -> bool:
    opens = start.replace(hour=1, minute=0, second=0, microsecond=0)
    return opens <= start and start + dt.timedelta(seconds=seconds) <= opens + dt.timedelta(hours=2)


@pytest.mark.parametrize("max_out", [1, 2])
def test_every_move_fits_its_window_and_at_most_max_out_nodes_are_out(max_out: int) -> None:
    cal = calendar(max_out)
    assert [s.nodes for s in cal.steps] == [["n3", "n4", "n5", "n6"][i:i + max_out] for i in range(0, 4, max_out)]
    for step in cal.steps:
        for move in step.drain.moves + step.restore.moves:
            assert inside_a_window(move.start, move.predicted_s * WINDOW_MARGIN), move
        assert step.drain.end <= step.maintenance_until <= step.restore.start
    for before, after in zip(cal.steps, cal.steps[1:], strict=False):
        assert before.restore.end <= after.drain.start  # the next group leaves only once this one is home
    assert cal.predicted_end == max(s.restore.end for s in cal.steps)


def test_every_container_that_leaves_comes_back_from_where_it_went() -> None:
    for step in calendar().steps:
        left = {m.ct: (m.source, m.target) for m in step.drain.moves}
        back = {m.ct: (m.target, m.source) for m in step.restore.moves}
        assert left == back and all(source in step.nodes for source, _ in left.values())
        assert not step.drain.unfit and not step.restore.unfit


def test_a_move_longer_than_any_window_is_named_not_scheduled() -> None:
    windows = MaintenanceWindows(parse_windows("daily 01:00 for 2min"))  # moves of n6: 8 s to 11 min
    inv = load_inventory(DEMO)
    cal = plan_campaign(inv, ["n6"], Policy(), windows, start=MONDAY)
    drain = cal.steps[0].drain
    assert drain.unfit and drain.moves  # the short ones still fit
    assert all(m.predicted_s * WINDOW_MARGIN <= 120 for m in drain.moves)
    assert not {m.ct for m in drain.moves} & set(drain.unfit)
    assert cal.problems == [f"n6: move of {ct} fits in no window" for ct in drain.unfit]
    assert {m.ct for m in cal.steps[0].restore.moves} == {m.ct for m in drain.moves}  # only those come back


def test_the_calendar_is_the_same_on_both_surfaces_and_a_mistake_reads_the_same(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    argv = ("maintenance", "plan", "--nodes", "a,b", "--windows", "sat 01:00 for 2h; sun 01:00 for 2h",
            "--start", "2026-11-16T00:00:00+00:00", "--maintenance", "45min")
    cli = json.loads(ferry(*argv, "--format", "json", config=config).stdout)
    api = client_for(Runtime(load_config(config)))
    body = {"nodes": ["a", "b"], "windows": ["sat 01:00 for 2h", "sun 01:00 for 2h"],
            "start": "2026-11-16T00:00:00+00:00", "maintenance": "45min"}
    answer = api.post("/v1/maintenance/plan", json=body)
    assert answer.status_code == 200 and answer.json() == cli
    assert cli["steps"][0]["drain"]["start"].startswith("2026-11-21T01:00")  # Saturday's window
    assert "Rolling maintenance of a, b" in ferry(*argv, config=config).stdout
    bad = ferry("maintenance", "plan", "--nodes", "a", "--windows", "sat 01:00 for 2 fortnights", config=config,
                check=False)
    assert_one_line_error(bad, "windows[0]='sat 01:00 for 2 fortnights'")
    refused = api.post("/v1/maintenance/plan", json={"nodes": ["a"], "windows": ["sat 01:00 for 2 fortnights"]})
    assert refused.status_code == 400 and bad.stderr.strip() == f"ferry: error: {refused.json()['error']}"


CAMPAIGN_FLEET = REPO / "tests" / "doubles" / "fleets" / "campaign.yaml"


@pytest.mark.slow
def test_a_campaign_over_four_nodes_runs_inside_its_windows_and_ends_as_predicted(tmp_path: Path) -> None:
    # 200x: the moves take seconds of wall time; idle hours between windows are skipped by the run.
    rt = Runtime(sim_config(tmp_path, fleet=CAMPAIGN_FLEET, speedup=200.0))
    request = MaintenancePlanRequest(nodes=["m1", "m2", "m3", "m4"], windows=["daily 01:00 for 2h"],
                                     maintenance="30min", start=MONDAY.isoformat())
    cal = plan_maintenance(rt, request)
    assert cal.problems == [] and len(cal.steps) == 4
    homes = {c.id: c.node for c in rt.backend.discover().containers}
    run = run_campaign(rt, cal, campaign_windows(rt, request), 1800.0, timeout_s=600.0)
    assert all(step["ok"] for step in run.steps)
    assert {c.id: c.node for c in rt.backend.discover().containers} == homes  # every container home
    assert run.moves == 2 * 20 and run.outside == []  # every move started inside a window
    predicted = (cal.predicted_end - MONDAY).total_seconds()
    actual = (run.end - MONDAY).total_seconds()
    assert abs(actual - predicted) <= 0.15 * predicted, (cal.predicted_end, run.end)
    assert stored_states(rt.sessions) == {}  # every node active again
