"""A Proxmox move across subnets against the API double: planned from a config with two subnets,
run by the engine on the dump path, the restored copy's ``net0`` rewritten with the new address
*and* the new subnet's gateway, every other property kept, checked on the very request the
double received."""

from __future__ import annotations

import pytest

from adapters.proxmox import create_backend
from adapters.proxmox.observe import parse_property_string
from fleet.networks import Networks
from fleet.policy import Policy
from planners import plan_evacuate
from planners.addresses import plan_with_addresses
from service.movespec import move_options
from tests.doubles.pvedouble.fixtures import make_double, pve_double, settings_for  # noqa: F401 - fixtures
from tests.integration.conformance.harness import MoveOrder, run_move

OLD_NET0 = "name=eth0,bridge=vmbr0,gw=203.0.113.1,hwaddr=BC:24:11:00:68:00,ip=203.0.113.13/24,type=veth"
NETWORKS = {"subnets": {
    "lan-a": {"subnet": "203.0.113.0/24", "gateway": "203.0.113.1", "nodes": ["pve1"]},
    "lan-b": {"subnet": "198.51.100.0/24", "gateway": "198.51.100.1", "nodes": ["pve2", "pve3"],
              "pool": ["198.51.100.40-198.51.100.49"]}}}


@pytest.fixture
def backend(pve_double, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", pve_double.token_secret)
    pve_double.world.guests[104].nets["net0"] = OLD_NET0
    made = create_backend(settings_for(pve_double))
    yield made
    made.close()


def _planned_move(backend, ct: str):
    """The plan's move of ``ct`` out of pve1, whose subnet no other node is in."""
    inv = backend.discover()
    plan = plan_with_addresses(lambda i: plan_evacuate(i, ["pve1"], Policy()), inv,
                               Networks.model_validate(NETWORKS), set(), policy=Policy())
    return next(m for m in plan.moves if m.ct == ct)


def test_a_move_across_subnets_rewrites_net0_with_the_new_address_and_gateway(pve_double, backend, tmp_path):  # noqa: F811
    move = _planned_move(backend, "104")
    assert move.method == "dump" and move.address.gateway == "198.51.100.1"  # never "live"
    order = MoveOrder(move.ct, move.from_node, move.to, method=move.method, options=move_options(move))
    assert order.options["gateway"] == "198.51.100.1" and order.options["ips"][0].endswith("/24")
    run = run_move(backend, order, tmp_path)
    assert run.state == "succeeded", run.message
    puts = [c for c in pve_double.world.calls if c["method"] == "PUT" and "net0" in c["params"]]
    assert len(puts) == 1 and puts[0]["path"].startswith(f"/nodes/{move.to}/lxc/")
    sent = parse_property_string(puts[0]["params"]["net0"])
    old = parse_property_string(OLD_NET0)
    assert sent["ip"] == f"{move.address.to}/24" and sent["gw"] == "198.51.100.1"
    assert {k: sent[k] for k in ("name", "bridge", "type")} == {k: old[k] for k in ("name", "bridge", "type")}
    assert set(sent) == set(old)  # nothing dropped, nothing invented
    copy = pve_double.world.guests[int(puts[0]["path"].split("/")[4])]
    assert copy.status == "running" and parse_property_string(copy.nets["net0"]) == sent
    assert pve_double.world.guests[104].status == "stopped"  # the source kept, stopped


def test_a_copy_routing_through_the_old_gateway_fails_verify(pve_double, backend, tmp_path):  # noqa: F811
    from adapters.base import MoveSpec, PermanentError, StepContext

    spec = MoveSpec("104", "pve1", "pve2", method="dump", ips=("198.51.100.41/24",), gateway="198.51.100.1")
    ctx = StepContext()
    for step in ("preflight", "prepare", "presync", "cutover"):
        getattr(backend, step)(spec, ctx)
    copy = next(g for g in pve_double.world.guests.values() if "ferry-from-104" in g.tags)
    with pve_double.world.lock:
        copy.nets["net0"] = copy.nets["net0"].replace("gw=198.51.100.1", "gw=203.0.113.1")
    with pytest.raises(PermanentError, match="routes through 203.0.113.1, expected 198.51.100.1"):
        backend.verify(spec, ctx)


def test_a_bad_ssh_table_is_one_line_naming_the_key(pve_double, monkeypatch, tmp_path):  # noqa: F811
    from fleet.errors import InputError

    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", pve_double.token_secret)
    (tmp_path / "id").write_text("key")
    table = {"nodes": {"pve1": {"host": "pve1.example.net"}}, "identity_file": str(tmp_path / "id"),
             "known_hosts_file": str(tmp_path / "missing")}
    with pytest.raises(InputError) as bad:
        create_backend(settings_for(pve_double, ssh=table))
    assert bad.value.key == "proxmox.ssh.known_hosts_file" and "\n" not in str(bad.value)
