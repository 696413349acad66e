"""The snapshot loader: the contract's keys, defaults, tags as rules, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fleet import InputError, effective_rules, inventory_digest, load_inventory, parse_inventory
from fleet.snapshot import dump_inventory

CONTRACT_EXAMPLE = {
    "version": 1, "taken_at": "2026-11-22T03:00:00Z",
    "nodes": [{"name": "pve1", "platform": "proxmox", "cpus": 32, "memory_mb": 131072, "cpu_usage": 0.41,
               "storage": {"local-zfs": {"total_gb": 1800, "used_gb": 900, "shared": False}},
               "online": True, "maintenance": False, "zone": "rack-a", "kernel": "6.8.12-4-pve",
               "version": "8.3.1", "tags": []},
              {"name": "pve2", "cpus": 8, "memory_mb": 65536}, {"name": "pve3", "cpus": 8, "memory_mb": 65536},
              {"name": "pve9", "cpus": 8, "memory_mb": 65536}],
    "containers": [{"id": "101", "node": "pve1", "name": "web-101", "status": "running", "cpus": 2,
                    "cpu_usage": 0.35, "memory_mb": 4096, "memory_used_mb": 2100, "disk_gb": 40,
                    "storage": "local-zfs", "ips": ["203.0.113.10"], "tags": ["plb_anti_affinity_dns"],
                    "ha": False, "dirty_mb_per_s": 1.5}]
    + [{"id": i, "node": "pve1", "memory_mb": 1024} for i in ("102", "201", "202", "301", "302", "401")],
    "rules": {"affinity": [["101", "102"]], "anti_affinity": [["201", "202"]], "pinned": ["301"],
              "pin_to": {"302": ["pve2", "pve3"]}, "ignore": ["401"], "exclude_nodes": ["pve9"]},
}


def test_contract_example_loads_with_every_key() -> None:
    inv = parse_inventory(CONTRACT_EXAMPLE)
    node = inv.node("pve1")
    assert node.storage["local-zfs"].free_gb == 900
    assert inv.node("pve2").platform == "proxmox" and inv.node("pve2").online  # defaults
    ct = inv.container("101")
    assert (ct.memory_mb, ct.disk_gb, ct.dirty_mb_per_s, ct.ips) == (4096, 40, 1.5, ["203.0.113.10"])
    assert inv.container("102").dirty_mb_per_s == 0.0 and inv.container("102").status == "running"
    rules = effective_rules(inv)
    assert rules.pin_to["302"] == frozenset({"pve2", "pve3"})
    assert rules.immovable("301") and rules.immovable("401") and not rules.immovable("101")
    assert rules.exclude_nodes == frozenset({"pve9"})


def test_unknown_keys_are_kept_and_round_trip() -> None:
    data = json.loads(json.dumps(CONTRACT_EXAMPLE))
    data["nodes"][0]["rack_power_kw"] = 7.5
    data["vendor"] = {"x": 1}
    inv = parse_inventory(data)
    again = json.loads(dump_inventory(inv))
    assert again["nodes"][0]["rack_power_kw"] == 7.5 and again["vendor"] == {"x": 1}
    assert inventory_digest(parse_inventory(again)) == inventory_digest(inv)
    assert inventory_digest(parse_inventory({**data, "taken_at": "2027-01-01T00:00:00Z"})) == inventory_digest(inv)
    data["nodes"][0]["memory_mb"] += 1
    assert inventory_digest(parse_inventory(data)) != inventory_digest(inv)


def test_proxlb_tags_become_rules() -> None:
    data = json.loads(json.dumps(CONTRACT_EXAMPLE))
    by_id = {c["id"]: c for c in data["containers"]}
    by_id["201"]["tags"] = ["plb_affinity_web"]
    by_id["202"]["tags"] = ["plb_affinity_web", "plb_pin_pve2"]
    by_id["302"]["tags"] = ["plb_anti_affinity_dns", "plb_pin_pve3", "plb_ignore_backup"]
    rules = effective_rules(parse_inventory(data))
    assert frozenset({"201", "202"}) in rules.affinity
    assert frozenset({"101", "302"}) in rules.anti_affinity  # tag group: 101 and 302 share "dns"
    assert rules.pin_to["202"] == frozenset({"pve2"})
    assert rules.pin_to["302"] == frozenset({"pve3"})  # explicit pve2,pve3 intersected with the tag
    assert "302" in rules.ignore


def test_overlapping_affinity_groups_merge() -> None:
    data = json.loads(json.dumps(CONTRACT_EXAMPLE))
    data["rules"]["affinity"] = [["101", "102"], ["102", "201"]]
    rules = effective_rules(parse_inventory(data))
    assert rules.group_of("101") == frozenset({"101", "102", "201"})


def test_yaml_and_json_files_load_the_same(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(CONTRACT_EXAMPLE))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(CONTRACT_EXAMPLE))
    assert inventory_digest(load_inventory(tmp_path / "s.json")) == inventory_digest(load_inventory(tmp_path / "s.yaml"))


def test_unquoted_yaml_timestamp_loads_as_written(tmp_path: Path) -> None:
    quoted = yaml.safe_dump(CONTRACT_EXAMPLE)
    assert "taken_at: '" in quoted
    path = tmp_path / "s.yaml"
    path.write_text(quoted.replace(f"taken_at: '{CONTRACT_EXAMPLE['taken_at']}'",
                                   f"taken_at: {CONTRACT_EXAMPLE['taken_at']}"))
    assert load_inventory(path).taken_at == CONTRACT_EXAMPLE["taken_at"]


def _broken(path: str, value: object) -> dict:
    data = json.loads(json.dumps(CONTRACT_EXAMPLE))
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(("path", "value", "key", "shown"), [
    ("containers.0.memory_mb", "lots", "containers[0].memory_mb", "'lots'"),
    ("containers.0.memory_mb", -1, "containers[0].memory_mb", "-1"),
    ("nodes.0.cpus", KeyError, "nodes[0].cpus", None),  # missing: no value to show
    ("nodes.0.platform", "xen", "nodes[0].platform", "'xen'"),
    ("containers.0.node", "pve7", "containers[0].node", "'pve7'"),
    ("containers.1.id", "101", "containers[1].id", "'101'"),
    ("containers.0.storage", "nfs", "containers[0].storage", "'nfs'"),
    ("containers.0.id", "x; rm -rf /", "containers[0].id", "'x; rm -rf /'"),
    ("containers.0.name", "evil\nname", "containers[0].name", "'evil\\nname'"),
    ("nodes.1.name", "pve1", "nodes[1].name", "'pve1'"),
    ("rules.pinned", ["999"], "rules.pinned[0]", "'999'"),
    ("rules.exclude_nodes", ["nope"], "rules.exclude_nodes[0]", "'nope'"),
    ("version", 2, "version", "2"),
    ("nodes.0.cpu_usage", 1.5, "nodes[0].cpu_usage", "1.5"),
    ("containers.1.id", "102\n", "containers[1].id", "'102\\n'"),  # a trailing newline is not matched away
    ("containers.0.node", "pve1\n", "containers[0].node", "'pve1\\n'"),
    ("containers.0.name", "web\n", "containers[0].name", "'web\\n'"),
    ("containers.0.name", "web\u202e101", "containers[0].name", "'web\\u202e101'"),
    ("containers.0.name", "web\x9b31m", "containers[0].name", "'web\\x9b31m'"),
    ("containers.0.name", 101.5, "containers[0].name", "101.5"),  # was a TypeError traceback
    ("nodes.0.kernel", "6.8\x1b[2J", "nodes[0].kernel", "'6.8\\x1b[2J'"),
    ("containers.0.ips", ["203.0.113.300"], "containers[0].ips[0]", "'203.0.113.300'"),
    ("containers.0.ips", ["$(reboot)"], "containers[0].ips[0]", "'$(reboot)'"),
    ("containers.0.memory_mb", "4096", "containers[0].memory_mb", "'4096'"),
    ("containers.0.ha", "yes", "containers[0].ha", "'yes'"),
    ("nodes.0.memory_mb", 2**40, "nodes[0].memory_mb", str(2**40)),
    ("nodes.0.cpus", 10**6, "nodes[0].cpus", str(10**6)),
    ("containers.0.disk_gb", 1e12, "containers[0].disk_gb", "1000000000000.0"),
    ("containers.0.dirty_mb_per_s", float("nan"), "containers[0].dirty_mb_per_s", "nan"),
    ("nodes.0.storage.local-zfs.total_gb", float("inf"), "nodes[0].storage.local-zfs.total_gb", "inf"),
])
def test_malformed_snapshots_are_refused_naming_key_and_value(path, value, key, shown) -> None:
    with pytest.raises(InputError) as info:
        parse_inventory(_broken(path, value))
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"{key}={shown}" if shown is not None else f"{key}: is required"), line


def test_addresses_and_integral_floats_load_as_written() -> None:
    data = _broken("containers.0.ips", ["203.0.113.10", "2001:db8::7", "10.0.0.5/24"])
    data["containers"][0]["memory_mb"] = 4096.0  # some exporters write every number as a float
    ct = parse_inventory(data).container("101")
    assert ct.ips == ["203.0.113.10", "2001:db8::7", "10.0.0.5/24"] and ct.memory_mb == 4096
    assert isinstance(ct.memory_mb, int)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_inventory(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "nodes": [')
    with pytest.raises(InputError, match="invalid JSON"):
        load_inventory(bad)
    worse = tmp_path / "bad.yaml"
    worse.write_text("nodes: [\n  - {name: a\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_inventory(worse)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="must be a mapping"):
        load_inventory(listy)


def test_demo_fleet_is_valid_and_realistic() -> None:
    inv = load_inventory(Path(__file__).parents[2] / "config" / "fleets" / "demo.yaml")
    assert 6 <= len(inv.nodes) and 100 <= len(inv.containers) <= 200
    assert all(128 * 1024 <= n.memory_mb <= 256 * 1024 for n in inv.nodes)
    assert all(1024 <= c.memory_mb <= 16 * 1024 for c in inv.containers)
    rules = effective_rules(inv)
    assert rules.affinity and rules.anti_affinity and rules.pinned


@given(st.lists(st.sets(st.sampled_from("abcdefghij"), min_size=1, max_size=4), max_size=8))
def test_affinity_merge_is_the_transitive_closure(groups: list[set[str]]) -> None:
    from fleet.rules import _merge_groups

    closure = [set(g) for g in groups]
    changed = True
    while changed:  # naive fixpoint: merge any two overlapping groups until none overlap
        changed = False
        for i in range(len(closure)):
            for j in range(i + 1, len(closure)):
                if closure[i] & closure[j]:
                    closure[i] |= closure.pop(j)
                    changed = True
                    break
            if changed:
                break
    expected = {frozenset(g) for g in closure if len(g) > 1}
    assert set(_merge_groups(groups)) == expected
