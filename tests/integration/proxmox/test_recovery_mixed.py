"""Recovery through the mixed backend: a dead OpenVZ node's container comes back on Proxmox from
its backup. n1 (OpenVZ) served CT 301 and vzdump'ed it to the backup host (n3), then died; the
restore runs on ``pve2`` (the API double, with lab host n2 as its SSH side): the archive is
fetched from n3 onto pve2's ``local`` dump dir, the config read from the archive and converted
key by key, restored through the API (restore=1), started only after the fence, verified; the
cleanup waits for n1. A backup of one Proxmox cluster planned onto another is refused by name."""

from __future__ import annotations

import os

import pytest

from adapters import openvz, proxmox
from adapters.mixed import MixedBackend
from tests.doubles.lab.containers import make_container
from tests.doubles.lab.netlab import SUBNET, Lab, missing_binaries
from tests.doubles.pvedouble.fixtures import make_double, pve_double, settings_for  # noqa: F401 - fixtures
from tests.integration.conformance.harness import MoveOrder, run_move

pytestmark = [pytest.mark.lab]

if os.geteuid() != 0 or missing_binaries():
    pytest.skip("needs root and the lab's binaries (tests/apt-packages.txt)", allow_module_level=True)

OLD, NEW, GATEWAY = f"{SUBNET}.31", f"{SUBNET}.131", f"{SUBNET}.1"


def _mixed(lab: Lab, double, monkeypatch) -> MixedBackend:
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", double.token_secret)
    ssh = lab.settings(connect_timeout_s=2)
    ovz = {**ssh, "nodes": {"n1": ssh["nodes"]["n1"]},
           "backups": {"dir": "/var/lib/vz/dump/{node}", "host": {"host": lab.nodes["n3"].addr}}}
    pve_ssh = {**{k: v for k, v in ssh.items() if k != "nodes"}, "nodes": {"pve2": ssh["nodes"]["n2"]}}
    return MixedBackend({
        "ovz": openvz.create_backend(ovz),
        "pve": proxmox.create_backend(settings_for(double, ssh=pve_ssh, storage_map={"vz": "local-zfs"}))})


def test_a_dead_openvz_node_comes_back_on_proxmox_from_its_backup(pve_double, monkeypatch, tmp_path):  # noqa: F811
    with Lab().up(3) as lab:
        n1 = lab.nodes["n1"]
        make_container(n1, "301", OLD, hostname="shop.lab.test")
        n1.run(f"vzctl start 301 && vzdump --compress --dumpdir /var/lib/vz/dump 301 >/dev/null && "
               f"rsync -a --mkpath /var/lib/vz/dump/ root@{lab.nodes['n3'].addr}:/var/lib/vz/dump/n1/")
        lab.kill_node("n1")
        pve_double.world.archive_dirs["local"] = lab.nodes["n2"].path("var_lib_vz") / "dump"
        backend = _mixed(lab, pve_double, monkeypatch)
        backend.discover()
        (backup,) = backend.restores().list_backups("n1", ["301"])
        order = MoveOrder("301", "n1", "pve2", method="dump", options={
            "archive": backup.archive, "fenced": True, "ips": [f"{NEW}/24"], "gateway": GATEWAY})
        run = run_move(backend, order, tmp_path)
        assert run.state == "succeeded", run.message
        assert "n1 is still down" in run.cleanup_pending  # its stale copy is checked when it returns
        (restore,) = [c for c in pve_double.world.calls if (c["method"], c["path"]) == ("POST", "/nodes/pve2/lxc")]
        sent = {k: str(v) for k, v in restore["params"].items()}
        assert sent["ostemplate"] == f"local:backup/{backup.archive.rsplit('/', 1)[-1]}" and sent["restore"] == "1"
        assert (sent["hostname"], sent["memory"], sent["net0"]) == (
            "shop.lab.test", "256", f"name=eth0,bridge=vmbr0,ip={NEW}/24,gw={GATEWAY}")  # converted from vps.conf
        copy = pve_double.world.guests[301]
        assert (copy.node, copy.status) == ("pve2", "running")
        commands = [e.what for e in run.commands() if e.kind == "command"]
        fetch = next(i for i, c in enumerate(commands) if c[0] == "rsync")
        assert commands[fetch][-1].startswith("/var/lib/vz/dump/")  # onto pve2's local storage
        assert not list((lab.nodes["n2"].path("var_lib_vz") / "dump").glob("vzdump-openvz-301-*"))  # removed
        journaled = [e.what for e in run.api()]
        start = journaled.index("POST /nodes/pve2/lxc/301/status/start")
        assert journaled.index("POST /nodes/pve2/lxc") < start
        assert any("fenced: confirmed by the operator" in e for e in run.events)
        backend.close()


def test_a_backup_of_one_proxmox_cluster_is_not_restored_in_another(make_double, monkeypatch):  # noqa: F811
    a, b = make_double(), make_double()
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", a.token_secret)
    backend = MixedBackend({"a": proxmox.create_backend(settings_for(a)), "b": proxmox.create_backend(settings_for(b))})
    backend._home = {"pve1": "a", "qve1": "b", "n1": "a"}  # what discover() learnt
    why = backend.restores().path_refusal("pve1", "qve1")
    assert why is not None and "proxmox cluster a onto proxmox cluster b" in why and "\n" not in why
    assert backend.restores().path_refusal("pve1", "n1") is None  # within its cluster
    backend.close()
