"""OpenVZ -> Proxmox end to end: an OpenVZ lab container is dumped on its node (vzdump), the
archive copied over SSH to the Proxmox node's ``local`` dump dir (a second lab host standing for
``pve2``), restored through the API double as ``pct restore`` does (POST /nodes/pve2/lxc with
ostemplate = the archive, restore=1) with its config converted key by key, started, verified;
the source stays stopped. The double reads the archive file itself (it must hold the OpenVZ
config, etc/vzdump/vps.conf). Every command and call is in the move's journal."""

from __future__ import annotations

import os

import pytest

from adapters import openvz, proxmox
from adapters.mixed import MixedBackend
from adapters.proxmox.endpoints import ENDPOINTS
from adapters.proxmox.observe import parse_property_string
from tests.doubles.lab.containers import make_container
from tests.doubles.lab.netlab import SUBNET, Lab, missing_binaries
from tests.doubles.pvedouble.fixtures import make_double, pve_double, settings_for  # noqa: F401 - fixtures
from tests.integration.conformance.harness import MoveOrder, run_move

pytestmark = [pytest.mark.lab]

if os.geteuid() != 0 or missing_binaries():
    pytest.skip("needs root and the lab's binaries (tests/apt-packages.txt)", allow_module_level=True)

OLD, NEW, GATEWAY = f"{SUBNET}.31", f"{SUBNET}.131", f"{SUBNET}.1"
#: What the OpenVZ config (tests/doubles/lab/containers.py: 256 MB RAM, 128 MB swap, DISKSPACE
#: hard limit 2306867 KiB, 2 CPUs, ONBOOT=yes, busybox template) becomes, key by key.
CONVERTED = {"vmid": "301", "restore": "1", "storage": "local-zfs", "unprivileged": "0",
             "ostype": "unmanaged", "onboot": "1", "memory": "256", "swap": "128",
             "rootfs": "local-zfs:3", "cores": "2", "hostname": "shop.lab.test",
             "nameserver": "10.77.0.53", "searchdomain": "lab.test",
             "net0": f"name=eth0,bridge=vmbr0,ip={NEW}/24,gw={GATEWAY}", "tags": "ferry-from-openvz-301"}


def _mixed(lab: Lab, double, monkeypatch) -> MixedBackend:
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", double.token_secret)
    ssh = lab.settings(retention_hours=1)
    pve_ssh = {**{k: v for k, v in ssh.items() if k != "nodes"}, "nodes": {"pve2": ssh["nodes"]["n2"]}}
    return MixedBackend({
        "ovz": openvz.create_backend({**ssh, "nodes": {"n1": ssh["nodes"]["n1"]}}),
        "pve": proxmox.create_backend(settings_for(double, ssh=pve_ssh, storage_map={"vz": "local-zfs"}))})


def test_an_openvz_container_lands_on_proxmox_converted_key_by_key(pve_double, monkeypatch, tmp_path):  # noqa: F811
    with Lab().up(2) as lab:
        n1 = lab.nodes["n1"]
        make_container(n1, "301", OLD, hostname="shop.lab.test")
        conf = n1.path("etc_vz/conf") / "301.conf"
        conf.write_text(conf.read_text() + 'NAMESERVER="10.77.0.53"\nSEARCHDOMAIN="lab.test"\n')
        n1.run("vzctl start 301")
        pve_double.world.archive_dirs["local"] = lab.nodes["n2"].path("var_lib_vz") / "dump"
        backend = _mixed(lab, pve_double, monkeypatch)
        assert {n.name for n in backend.discover().nodes} == {"n1", "pve1", "pve2", "pve3"}
        order = MoveOrder("301", "n1", "pve2", method="dump", options={"ips": [f"{NEW}/24"], "gateway": GATEWAY})
        run = run_move(backend, order, tmp_path)
        assert run.state == "succeeded", run.message
        (restore,) = [c for c in pve_double.world.calls if (c["method"], c["path"]) == ("POST", "/nodes/pve2/lxc")]
        sent = restore["params"]
        archive = sent.pop("ostemplate")
        assert archive.startswith("local:backup/vzdump-openvz-301-") and archive.endswith(".tgz")
        assert {k: str(v) for k, v in sent.items()} == CONVERTED  # key by key, nothing more
        assert set(sent) | {"ostemplate"} <= ENDPOINTS[("POST", "/nodes/{node}/lxc")][0]  # each one cited
        copy = pve_double.world.guests[301]
        assert (copy.node, copy.status) == ("pve2", "running")
        got = {**copy.config(), "net0": copy.nets["net0"]}
        for key in ("memory", "swap", "hostname", "nameserver", "searchdomain", "onboot", "ostype"):
            assert str(got[key]) == CONVERTED[key], key
        assert parse_property_string(got["net0"]) == parse_property_string(CONVERTED["net0"])
        assert n1.run("vzctl status 301").split()[2:5] == ["exist", "unmounted", "down"]  # kept, stopped ...
        assert 'ONBOOT="no"' in conf.read_text()  # ... and is not started at boot (cleanup)
        assert "retention" in run.cleanup_pending
        commands = [" ".join(e.what) for e in run.commands() if e.kind == "command"]
        for what in ("vzctl stop 301", "vzdump --compress --dumpdir", "rsync -a", "vzctl set 301 --onboot no"):
            assert any(what in c for c in commands), what
        journaled = {e.what for e in run.api()}
        changes = {f"{c['method']} {c['path']}" for c in pve_double.world.calls if c["method"] != "GET"}
        assert changes <= journaled and "POST /nodes/pve2/lxc/301/status/start" in changes
        assert not list((lab.nodes["n2"].path("var_lib_vz") / "dump").glob("vzdump-openvz-301-*"))
        backend.close()


def test_a_failed_restore_rolls_back_to_the_running_openvz_source(pve_double, monkeypatch, tmp_path):  # noqa: F811
    with Lab().up(2) as lab:
        n1 = lab.nodes["n1"]
        make_container(n1, "301", OLD, hostname="shop.lab.test")
        n1.run("vzctl start 301")
        pve_double.world.archive_dirs["local"] = lab.nodes["n2"].path("var_lib_vz") / "dump"
        pve_double.world.faults.task_failures[("vzcreate", 301)] = "unable to restore CT 301 - no space left"
        backend = _mixed(lab, pve_double, monkeypatch)
        order = MoveOrder("301", "n1", "pve2", method="dump", options={"ips": [f"{NEW}/24"], "gateway": GATEWAY})
        run = run_move(backend, order, tmp_path)
        assert run.state not in ("succeeded", "running"), run.message
        assert "no space left" in run.message
        assert n1.run("vzctl status 301").split()[2:5] == ["exist", "mounted", "running"]  # serving again
        assert 301 not in pve_double.world.guests  # no half-made copy left on Proxmox
        assert n1.run("ls /var/lib/ferry/301 2>/dev/null; true").strip() == ""
        backend.close()


def test_a_venet_address_without_prefix_stops_the_move_before_anything_changes(pve_double, monkeypatch, tmp_path):  # noqa: F811
    with Lab().up(2) as lab:
        n1 = lab.nodes["n1"]
        make_container(n1, "301", OLD)
        n1.run("vzctl start 301")
        backend = _mixed(lab, pve_double, monkeypatch)
        run = run_move(backend, MoveOrder("301", "n1", "pve2", method="dump"), tmp_path)
        assert run.state != "succeeded" and "declare the subnet in [networks]" in run.message, run.message
        assert n1.run("vzctl status 301").split()[2:5] == ["exist", "mounted", "running"]
        assert not [c for c in pve_double.world.calls if c["method"] != "GET"]
        backend.close()
