"""The real ``ferry`` console script against the HTTPS Proxmox API double (TLS verified).

    test process: PveDouble (thread, 127.0.0.1:port) <--HTTPS-- ferry subprocess (--config ferry.toml)
                        |                                              |
                  world.calls (what it served)  ==  ferry job show --format json (what ferry journaled)

The token secret lives in a file the config names; it must show up nowhere ferry writes.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from pathlib import Path

from fleet.model import Inventory
from fleet.snapshot import dump_inventory, parse_inventory
from tests.doubles.pvedouble.fixtures import make_double, pve_double, small_fleet  # noqa: F401 - fixtures
from tests.doubles.pvedouble.model import ReplicationJob
from tests.doubles.pvedouble.server import PveDouble
from tests.integration.sim.test_cli import MOVE_KEYS, PLAN_KEYS, SCORE_KEYS, assert_one_line_error, ferry


def write_config(tmp: Path, double: PveDouble, *, secret: str | None = None, ca_file: str | None = None,
                 port: int | None = None) -> Path:
    """A ferry config for ``double``; the token secret goes to a file beside it."""
    (tmp / "pve-token").write_text((secret or double.token_secret) + "\n", encoding="utf-8")
    (tmp / "pve-token").chmod(0o600)
    lines = ["[ferry]", 'backend = "proxmox"', 'state_dir = "state"',
             "[engine]", "retry_initial_s = 0.01", "retry_max_s = 0.05",
             "[proxmox]", f'host = "{double.host}"', f"port = {port or double.port}",
             f'token_id = "{double.token_id}"', 'token_secret_file = "pve-token"',
             f'ca_file = "{ca_file or double.ca_file}"', "poll_interval_s = 0.005", "lock_wait_s = 10.0",
             "task_timeout_s = 20.0", "ha_timeout_s = 10.0", "timeout_s = 5.0", "get_retries = 2",
             'backup_storage = "nfs-backup"']
    path = tmp / "ferry.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def without_taken_at(text: str) -> dict:
    data = json.loads(text)
    data.pop("taken_at", None)
    return data


def normalise(params: dict) -> dict[str, str]:
    """Parameters as they travel in a form body: every value a string."""
    return {k: str(v) for k, v in sorted(params.items())}


def served(calls: list[dict]) -> Counter:
    return Counter((c["method"], c["path"], c["status"], json.dumps(normalise(c["params"])), c["upid"])
                   for c in calls)


def journaled(journal: list[dict]) -> Counter:
    rows = [j for j in journal if j["kind"] == "api"]
    return Counter((*j["what"].split(" ", 1), j["status"], json.dumps(normalise(j["detail"]["params"])),
                    j["detail"].get("upid")) for j in rows)


def test_inventory_json_is_the_doubles_fleet(pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    config = write_config(tmp_path, pve_double)
    out = ferry("inventory", "--format", "json", config=config).stdout
    assert without_taken_at(out) == without_taken_at(dump_inventory(pve_double.world.snapshot()))
    # ...and the snapshot the double was built from, wherever that snapshot states a value.
    source = small_fleet().model_dump(exclude={"taken_at"})
    found = parse_inventory(json.loads(out)).model_dump(exclude={"taken_at"})
    assert [n["name"] for n in found["nodes"]] == [n["name"] for n in source["nodes"]]
    for want, got in zip(source["containers"], found["containers"], strict=True):
        for key in ("id", "node", "name", "status", "cpus", "memory_mb", "disk_gb", "storage", "ips", "tags", "ha"):
            assert got[key] == want[key], (want["id"], key)
        assert got["memory_used_mb"] == (want["memory_used_mb"] if want["status"] == "running" else 0)
    for want, got in zip(source["nodes"], found["nodes"], strict=True):
        assert {k: got[k] for k in ("cpus", "memory_mb", "storage", "kernel", "version")} == \
               {k: want[k] for k in ("cpus", "memory_mb", "storage", "kernel", "version")}


def test_plan_evacuate_is_contract_exact(pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    config = write_config(tmp_path, pve_double)
    first = ferry("plan", "evacuate", "pve1", "--format", "json", config=config).stdout
    plan = json.loads(first)
    assert set(plan) == PLAN_KEYS and plan["version"] == 1 and set(plan["score"]) == SCORE_KEYS
    assert plan["goal"] == {"kind": "evacuate", "nodes": ["pve1"]}
    assert plan["inventory_digest"].startswith("sha256:") and not plan["unplaced"]
    assert sorted(m["ct"] for m in plan["moves"]) == ["101", "102", "104"]
    for move in plan["moves"]:
        # plan.md's keys, plus the planner's optional target_storage (read by the proxmox adapter)
        assert MOVE_KEYS <= set(move) <= MOVE_KEYS | {"target_storage"} and move["from"] == "pve1" and move["to"] in ("pve2", "pve3")
        assert set(move["predicted"]) >= {"duration_s", "downtime_s", "bytes"}
    assert plan["after"]["pve1"]["memory"] == 0.0
    # Nothing moved: planned again offline from a fresh snapshot, the plan is the same (only the
    # digest differs: it covers the snapshot's taken_at), and byte-identical run to run.
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text(ferry("inventory", "--format", "json", config=config).stdout, encoding="utf-8")
    offline = [ferry("plan", "evacuate", "pve1", "--inventory", str(snapshot), "--format", "json",
                     config=config).stdout for _ in range(2)]
    assert offline[0] == offline[1]
    assert {**json.loads(offline[0]), "inventory_digest": None} == {**plan, "inventory_digest": None}
    assert not [c for c in pve_double.world.calls if c["method"] != "GET"]


def test_evacuate_journals_every_api_call_without_the_secret(pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    config = write_config(tmp_path, pve_double)
    ferry("inventory", "--format", "json", config=config)
    discover_calls = len(pve_double.world.calls)  # what one discover() asks
    run = ferry("evacuate", "pve1", "--yes", "--format", "json", config=config)
    summary = json.loads(run.stdout)
    assert summary["state"] == "succeeded", summary
    assert summary["counts"].get("succeeded") == 3
    world = pve_double.world.snapshot()
    assert not [c.id for c in world.containers if c.node == "pve1"]
    assert all(world.container(ct).status == "running" for ct in ("101", "102", "104"))
    # Cleanup leaves no presync replication job behind; the HA resource follows its CT.
    assert not pve_double.world.replication
    ha = pve_double.world.ha["ct:102"]
    assert (ha.state, ha.current, ha.request) == ("started", "started", None)
    assert world.container("102").ha and world.container("102").node != "pve1"

    shown = ferry("job", "show", str(summary["job_id"]), "--format", "json", config=config)
    detail = json.loads(shown.stdout)
    job_calls = pve_double.world.calls[2 * discover_calls:]  # the evacuate's own discover is not a step
    assert journaled(detail["journal"]) == served(job_calls)
    posts = [j for j in detail["journal"] if j["kind"] == "api" and j["what"].startswith("POST ")]
    migrations = [j for j in posts if j["what"].endswith("/migrate")]
    assert len(migrations) == 3 and all((j["detail"]["params"].get("target") or j["detail"]["params"].get("node")) in ("pve2", "pve3")
                                                for j in migrations)
    started = [j for j in posts if j["what"].startswith("POST /nodes/")]
    assert started and all(j["detail"].get("upid", "").startswith("UPID:") for j in started
                           if not j["what"].endswith("/schedule_now") and "/ha/" not in j["what"])
    assert all(j["status"] == 200 and j["duration_ms"] >= 0 for j in posts)

    secret = pve_double.token_secret
    database = tmp_path / "state" / "ferry.db"
    assert database.is_file()
    for text in (run.stdout, run.stderr, shown.stdout, shown.stderr):
        assert secret not in text
    assert secret.encode() not in database.read_bytes()
    for extra in database.parent.iterdir():
        assert secret.encode() not in extra.read_bytes(), extra


def run_dump_of_104(config: Path, tmp_path: Path) -> tuple[int, str]:
    """``ferry run`` a saved plan that moves CT 104 by dump (one move of pve1's evacuation, as a
    plan of its own); the job id and the move's target node."""
    plan = json.loads(ferry("plan", "evacuate", "pve1", "--format", "json", config=config).stdout)
    plan["moves"] = [{**m, "method": "dump", "after": [], "wave": 0} for m in plan["moves"] if m["ct"] == "104"]
    plan["goal"] = {"kind": "rebalance", "nodes": []}
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(plan), encoding="utf-8")
    summary = json.loads(ferry("run", str(saved), "--yes", "--format", "json", config=config).stdout)
    assert summary["state"] == "succeeded", summary
    return summary["job_id"], plan["moves"][0]["to"]


def with_retention(tmp_path: Path, double: PveDouble, hours: float) -> Path:
    config = write_config(tmp_path, double)
    config.write_text(config.read_text() + f"retention_hours = {hours}\n", encoding="utf-8")
    return config


def job_move(config: Path, job_id: int, ct: str) -> tuple[dict, list[dict]]:
    """The move of ``ct`` and the job's journal, as ``ferry job show --format json`` reports them."""
    detail = json.loads(ferry("job", "show", str(job_id), "--format", "json", config=config).stdout)
    return next(m for m in detail["moves"] if m["ct"] == ct), detail["journal"]


def copy_of(double: PveDouble, ct: str) -> int:
    copies = [g.vmid for g in double.world.guests.values() if f"ferry-from-{ct}" in g.tags]
    assert len(copies) == 1, copies
    return copies[0]


def retired_until(double: PveDouble, vmid: int) -> int:
    return next(int(t.removeprefix("ferry-retired-")) for t in double.world.guests[vmid].tags
                if t.startswith("ferry-retired-"))


def retention_ends(double: PveDouble, vmid: int) -> None:
    """The retention of retired ``vmid`` ends: the end recorded on the guest (its
    ``ferry-retired-<epoch>`` tag, what cleanup reads) moves into the past, as if the hours passed."""
    with double.world.lock:
        guest = double.world.guests[vmid]
        guest.tags = [t for t in guest.tags if not t.startswith("ferry-retired-")] + \
            [f"ferry-retired-{int(time.time()) - 1}"]


def cleanup_lines(config: Path) -> list[str]:
    return json.loads(ferry("cleanup", "--format", "json", config=config).stdout)


def test_dump_move_with_zero_retention_purges_the_source(pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    """retention_hours = 0: cleanup destroys the verified move's source with purge=1, which also
    drops the replication jobs that named it; nothing refers to the old VMID afterwards."""
    config = with_retention(tmp_path, pve_double, 0)
    world = pve_double.world
    world.replication["104-0"] = ReplicationJob("104-0", 104, "pve3", "pve1", comment="operator's own job")
    _, target = run_dump_of_104(config, tmp_path)
    final = world.snapshot()
    copies = [c for c in final.containers if "ferry-from-104" in c.tags]
    assert len(copies) == 1 and copies[0].status == "running" and copies[0].node == target
    assert "104" not in {c.id for c in final.containers}, "the retired source must be gone"
    assert not world.replication
    destroyed = [c for c in world.calls if c["method"] == "DELETE" and c["path"] == "/nodes/pve1/lxc/104"]
    assert len(destroyed) == 1 and destroyed[0]["params"] == {"purge": "1"}
    assert cleanup_lines(config) == []  # the move's cleanup is done, not left for later


RETENTION_H = 1.0  # cannot end during a test, however slow the machine: retention_ends() ends it


def test_dump_source_waits_out_its_retention_then_a_later_cleanup_purges_it(
        pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    config = with_retention(tmp_path, pve_double, RETENTION_H)
    world = pve_double.world
    job_id, target = run_dump_of_104(config, tmp_path)
    until = retired_until(pve_double, 104)
    early = cleanup_lines(config)  # at once: the retention still runs
    assert time.time() < until, "the first `ferry cleanup` must run inside the retention"
    assert len(early) == 1 and early[0].startswith(f"job {job_id} 104: source CT 104 kept stopped on pve1 until ")
    move, _ = job_move(config, job_id, "104")
    assert (move["state"], move["phase"]) == ("succeeded", "pending") and "(retention)" in move["message"]
    source, copy = world.guests[104], world.guests[copy_of(pve_double, "104")]
    assert (source.node, source.status) == ("pve1", "stopped")
    assert (copy.node, copy.status) == (target, "running")
    assert not [c for c in world.calls if c["method"] == "DELETE"]

    retention_ends(pve_double, 104)
    assert cleanup_lines(config) == [f"job {job_id} 104: cleanup done"]
    assert 104 not in world.guests and world.guests[copy.vmid].status == "running"
    move, journal = job_move(config, job_id, "104")
    assert (move["state"], move["phase"]) == ("succeeded", "done")
    served_delete = [c for c in world.calls if c["method"] == "DELETE"]
    assert [(c["path"], c["params"]) for c in served_delete] == [("/nodes/pve1/lxc/104", {"purge": "1"})]
    purge = [j for j in journal if j["kind"] == "api" and j["what"] == "DELETE /nodes/pve1/lxc/104"]
    assert len(purge) == 1 and purge[0]["step"] == "cleanup" and purge[0]["status"] == 200
    assert normalise(purge[0]["detail"]["params"]) == {"purge": "1"}
    assert purge[0]["detail"]["upid"] == served_delete[0]["upid"]
    assert any(j["what"] == "purged retired source" and j["detail"]["copy"] == copy.vmid for j in journal)

    before = len(world.calls)
    assert cleanup_lines(config) == []  # nothing pending any more
    assert not [c for c in world.calls[before:] if c["method"] != "GET"]


def test_later_cleanup_never_purges_a_source_whose_copy_is_not_running(
        pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    config = with_retention(tmp_path, pve_double, RETENTION_H)
    world = pve_double.world
    job_id, _ = run_dump_of_104(config, tmp_path)
    copy = copy_of(pve_double, "104")
    with world.lock:  # the restored copy stopped after the move was verified
        world.guests[copy].status = "stopped"
    retention_ends(pve_double, 104)
    assert cleanup_lines(config) == [f"job {job_id} 104: restored copy of CT 104 {copy} is stopped on "
                                     f"{world.guests[copy].node}; source kept until the copy runs"]
    assert world.guests[104].status == "stopped" and not [c for c in world.calls if c["method"] == "DELETE"]
    move, _ = job_move(config, job_id, "104")
    assert move["phase"] == "pending" and f"{copy} is stopped" in move["message"]

    with world.lock:  # running again: the guard, not the clock, was what held the source
        world.guests[copy].status = "running"
    assert cleanup_lines(config) == [f"job {job_id} 104: cleanup done"]
    assert 104 not in world.guests


def test_presync_repeats_replication_until_the_delta_is_small(make_double, tmp_path: Path) -> None:  # noqa: F811
    """A 256 GB volume written at 5 MiB/s: the first replication run takes minutes, so ferry runs
    another; the migration then sends only what changed in seconds, and the CT is down only for
    shutdown + that delta + start (the double's timeline, simulated seconds)."""
    fleet = small_fleet().model_dump()
    fleet["containers"] = [{**c, "disk_gb": 256, "dirty_mb_per_s": 5.0} for c in fleet["containers"] if c["id"] == "101"]
    double = make_double(Inventory.model_validate(fleet), time_scale=200.0)
    config = write_config(tmp_path, double)
    summary = json.loads(ferry("evacuate", "pve1", "--yes", "--format", "json", config=config).stdout)
    assert summary["state"] == "succeeded", summary
    journal = json.loads(ferry("job", "show", str(summary["job_id"]), "--format", "json", config=config).stdout)
    passes = [j for j in journal["journal"] if j["what"] == "presync done"]
    # Simulated seconds of the double (its clock is wall time x 200, so ferry's own requests between
    # tasks count too): bounds with room for a loaded machine, far from what a failure would give.
    first, last = passes[0]["detail"]["duration_s"], passes[-1]["detail"]["duration_s"]
    assert len(passes) >= 2 and first > 10 and last < first / 5, [p["detail"] for p in passes]
    migration = next(t for t in double.world.tasks.values() if t.type == "vzmigrate")
    sent_mib = int(migration.log[1].split()[1])
    assert sent_mib < 0.002 * 128 * 1024, migration.log  # not the 128 GiB of data
    rows = [(t, node, status) for t, vmid, node, status in double.world.timeline if vmid == 101]
    stopped = next(t for t, node, status in rows if status == "stopped")
    running = next(t for t, node, status in rows if node != "pve1" and status == "running")
    # 4 s shutdown + 2 s start + the small delta (+ ferry's requests); a full copy would take 131 s
    assert 6.0 <= running - stopped < 40.0


def test_wrong_token_is_a_one_line_config_error(pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    config = write_config(tmp_path, pve_double, secret="00000000-not-the-secret")
    result = ferry("inventory", "--format", "json", config=config, check=False)
    assert_one_line_error(result, "proxmox.token_id", "401")
    assert "00000000-not-the-secret" not in result.stderr + result.stdout
    assert pve_double.world.requests[-1][2] == 401


def test_unknown_ca_is_a_one_line_config_error(make_double, pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    other = make_double()  # another double: its CA did not sign pve_double's certificate
    config = write_config(tmp_path, pve_double, ca_file=str(other.ca_file))
    result = ferry("inventory", "--format", "json", config=config, check=False)
    assert_one_line_error(result, "proxmox.ca_file", "not signed by this CA")
    assert not pve_double.world.calls, "no request may pass an unverified TLS handshake"


def test_unreachable_cluster_is_a_clear_error_not_a_traceback(pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    config = write_config(tmp_path, pve_double, port=closed)
    result = ferry("inventory", "--format", "json", config=config, check=False, timeout=60)
    assert result.returncode != 0 and not result.stdout
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("ferry: error: ") and "GET /cluster/resources" in lines[0]


def test_missing_secret_file_names_the_key(pve_double: PveDouble, tmp_path: Path) -> None:  # noqa: F811
    config = write_config(tmp_path, pve_double)
    (tmp_path / "pve-token").unlink()
    result = ferry("inventory", config=config, check=False)
    assert_one_line_error(result, "proxmox.token_secret_file", "cannot read")
    assert not pve_double.world.calls
