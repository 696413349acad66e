"""Mixed fleets: one config naming OpenVZ nodes and Proxmox clusters, planned together; the
platform filter lets a container cross platforms only where ferry has a path and the policy
allows it; bad configuration is one line naming the key."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from adapters.base import MoveSpec, RefusedError, Step, StepContext, run_step
from adapters.mixed import CROSSINGS, MixedBackend
from fleet.errors import InputError
from fleet.policy import Policy
from fleet.snapshot import parse_inventory
from planners import plan_evacuate
from service.config import load_config
from service.runtime import make_backend


def _fleet():
    nodes = [{"name": n, "platform": p, "cpus": 16, "memory_mb": 8192, "kernel": k, "version": v}
             for n, p, k, v in (("o1", "openvz", "2.6.32-042stab", None), ("o2", "openvz", "2.6.32-042stab", None),
                                ("p1", "proxmox", "6.8", "8.3"), ("p2", "proxmox", "6.8", "8.3"))]
    cts = [{"id": f"{i}", "node": "o1", "memory_mb": 2048} for i in (101, 102, 103)]
    cts += [{"id": "901", "node": "o2", "memory_mb": 7000}]  # o2 has room for none of o1's
    cts += [{"id": f"{i}", "node": "p1", "memory_mb": 1024} for i in (201, 202)]
    return parse_inventory({"version": 1, "nodes": nodes, "containers": cts})


def test_without_a_crossing_an_openvz_container_stays_on_openvz():
    plan = plan_evacuate(_fleet(), ["o1"], Policy())
    assert not plan.moves and len(plan.unplaced) == 3
    assert all("on an allowed node" in u.reason and "(o2)" in u.reason for u in plan.unplaced)  # o2 only


def test_an_allowed_crossing_moves_openvz_containers_onto_proxmox_by_dump_and_never_back():
    policy = Policy(platform_crossings=["openvz->proxmox"])
    plan = plan_evacuate(_fleet(), ["o1"], policy)
    assert {m.ct for m in plan.moves} == {"101", "102", "103"} and not plan.unplaced
    assert {m.to for m in plan.moves} <= {"p1", "p2"} and {m.method for m in plan.moves} == {"dump"}
    back = plan_evacuate(_fleet(), ["p1"], policy)
    assert {m.to for m in back.moves} == {"p2"}  # no path proxmox -> openvz


def test_the_policy_accepts_only_crossings_ferry_has_a_path_for():
    allowed = typing.get_args(typing.get_args(Policy.model_fields["platform_crossings"].annotation)[0])
    assert {tuple(a.split("->")) for a in allowed} == set(CROSSINGS)


CONFIG = """
[ferry]
backend = "mixed"
[policy]
platform_crossings = {crossings}
[mixed.clusters.ovz]
platform = "openvz"
identity_file = "id"
known_hosts_file = "kh"
nodes = {{ o1 = {{ host = "192.0.2.11" }} }}
[mixed.clusters.pve]
platform = "proxmox"
host = "192.0.2.20"
port = {port}
token_id = "ferry@pve!migrate"
token_secret_env = "FERRY_TEST_PVE_SECRET"
"""


def _config(tmp_path: Path, port: object = 8006, crossings: str = '["openvz->proxmox"]') -> Path:
    (tmp_path / "id").write_text("key")
    (tmp_path / "kh").write_text("")
    path = tmp_path / "ferry.toml"
    path.write_text(CONFIG.format(port=port, crossings=crossings))
    return path


def test_one_config_names_several_clusters(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", "s")
    config = load_config(_config(tmp_path))
    backend = make_backend(config)
    assert isinstance(backend, MixedBackend) and set(backend.members) == {"ovz", "pve"}
    assert [m.name for m in backend.members.values()] == ["openvz", "proxmox"]
    assert config.policy.platform_crossings == ["openvz->proxmox"]
    backend._home = {"o1": "ovz", "p1": "pve"}  # what discover() learnt
    with pytest.raises(RefusedError, match="no path from proxmox cluster pve to openvz cluster ovz"):
        run_step(backend, Step.PREFLIGHT, MoveSpec("201", "p1", "o1", method="dump"), StepContext())
    assert backend.refusals(MoveSpec("101", "o1", "p1", method="dump", ports=(80,))) == {
        "ports": "an OpenVZ -> Proxmox move stops the source before the copy exists: there is "
                 "nothing to hold clients on"}
    backend.close()


@pytest.mark.parametrize("port,crossings,key", [
    ('"eighty"', '[]', "mixed.clusters.pve.port"),
    (8006, '["proxmox->openvz"]', "policy.platform_crossings"),
])
def test_a_bad_mixed_config_is_one_line_naming_the_key(tmp_path, monkeypatch, port, crossings, key):
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", "s")
    with pytest.raises(InputError) as bad:
        make_backend(load_config(_config(tmp_path, port, crossings)))
    assert bad.value.key.startswith(key) and "\n" not in str(bad.value), str(bad.value)


def test_an_openvz_container_keeping_its_subnet_on_proxmox_gets_prefix_and_gateway():
    from fleet.networks import Networks
    from planners.addresses import plan_with_addresses
    from service.movespec import move_options

    inv = _fleet()
    inv = inv.model_copy(update={"containers": [
        c.model_copy(update={"ips": [f"10.0.1.1{c.id[-1]}"]}) if c.node == "o1" else c for c in inv.containers]})
    nets = Networks.model_validate({"subnets": {"lan": {"subnet": "10.0.1.0/24", "gateway": "10.0.1.1",
                                                         "nodes": ["o1", "o2", "p1", "p2"]}}})
    policy = Policy(platform_crossings=["openvz->proxmox"])
    plan = plan_with_addresses(lambda i: plan_evacuate(i, ["o1"], policy), inv, nets, set(), policy=policy)
    move = next(m for m in plan.moves if m.ct == "101")
    assert move.method == "dump" and move.address.to == move.address.from_ip == "10.0.1.11"
    assert move_options(move) == {"ips": ["10.0.1.11/24"], "gateway": "10.0.1.1"}
    assert "on a bridge" in move.reason


def test_the_cli_plans_a_mixed_fleet_across_platforms(tmp_path):
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "fleet.json").write_text(_fleet().model_dump_json())
    config = _config(tmp_path)
    env = {**os.environ, "FERRY_TEST_PVE_SECRET": "s", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    ferry = str(Path(sys.executable).parent / "ferry")
    done = subprocess.run([ferry, "--config", str(config), "plan", "evacuate", "o1",
                           "--inventory", str(tmp_path / "fleet.json"), "--format", "json"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    moves = json.loads(done.stdout)["moves"]
    assert {(m["ct"], m["method"]) for m in moves} == {("101", "dump"), ("102", "dump"), ("103", "dump")}
    assert {m["to"] for m in moves} <= {"p1", "p2"}
    assert all(m["reason"].endswith("crosses platforms: openvz -> proxmox (vzdump on the source, copy, "
                                    "restore converted)") for m in moves)


def test_a_move_between_two_proxmox_clusters_says_so_in_its_reason():
    from fleet.crossings import name_crossings

    inv = _fleet()
    tags = {"o1": "ovz", "o2": "ovz", "p1": "pve-a", "p2": "pve-b"}
    inv = inv.model_copy(update={"nodes": [n.model_copy(update={"tags": [f"cluster:{tags[n.name]}"]})
                                           for n in inv.nodes]})
    kept = plan_evacuate(inv, ["p1"], Policy())  # by default a container stays in its cluster
    assert not kept.moves and {u.ct for u in kept.unplaced} == {c.id for c in inv.containers if c.node == "p1"}
    back = plan_evacuate(inv, ["p1"], Policy(cluster_crossings=["pve-b->pve-a"]))  # the other way only
    assert not back.moves
    plan = name_crossings(plan_evacuate(inv, ["p1"], Policy(cluster_crossings=["pve-a->pve-b"])), inv)
    assert {m.to for m in plan.moves} == {"p2"}
    assert plan_evacuate(inv, ["p1"], Policy(cluster_crossings=["*"])).moves == plan_evacuate(
        inv, ["p1"], Policy(cluster_crossings=["pve-a->pve-b"])).moves
    assert plan.moves and all(m.reason.endswith("; crosses clusters: pve-a -> pve-b (remote_migrate, else vzdump "
                                                 "and restore)") for m in plan.moves), [m.reason for m in plan.moves]
    within = name_crossings(plan_evacuate(_fleet(), ["p1"], Policy()), _fleet())  # no cluster tags: one cluster
    assert not any("crosses" in m.reason for m in within.moves)
    again = name_crossings(plan, inv)
    assert again == plan  # said once, however often it is asked


@pytest.mark.parametrize("line,key", [
    ('fingerprint = "zz"', "mixed.clusters.pve.fingerprint"),
    ('node_hosts = { p1 = 5 }', "mixed.clusters.pve.node_hosts.p1"),
    ('bridge_map = { vmbr0 = "no such bridge" }', "mixed.clusters.pve.bridge_map.vmbr0"),
    ('cluster_hosts = {}', "mixed.clusters.pve.cluster_hosts"),
])
def test_a_bad_cluster_crossing_key_is_one_line_naming_it(tmp_path, monkeypatch, line, key):
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", "s")
    path = _config(tmp_path)
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(InputError) as bad:
        make_backend(load_config(path))
    assert bad.value.key == key and "\n" not in str(bad.value), str(bad.value)
