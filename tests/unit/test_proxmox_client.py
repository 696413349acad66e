"""The HTTP layer of the proxmox adapter with the ``responses`` library: request building, error
mapping, retries, redaction, unit conversion and settings validation."""

from __future__ import annotations

import urllib.parse

import pytest
import requests
import responses

from adapters.base import PermanentError, StepContext, TransientError
from adapters.proxmox import create_backend, parse_settings
from adapters.proxmox.client import Api, ApiFailure, ApiTransient, ProxmoxClient, redact
from adapters.proxmox.inventory import discover
from adapters.proxmox.tasks import TaskFailed, exit_ok, parse_upid, wait_task
from fleet.errors import InputError
from tests.doubles.journal_recorder import Recorder

BASE = "https://pve.test:8006/api2/json"
SECRET = "d1c0ffee-0000-4000-8000-000000000001"
UPID = "UPID:pve2:0003A1F2:00B5E3C1:6740A1B2:vzmigrate:101:ferry@pve!migrate:"


@pytest.fixture
def api(monkeypatch) -> tuple[Api, Recorder]:
    monkeypatch.setenv("PVE_SECRET", SECRET)
    settings = parse_settings({"host": "pve.test", "token_id": "ferry@pve!migrate", "token_secret_env": "PVE_SECRET",
                               "poll_interval_s": 0.001, "get_retries": 3})
    journal = Recorder()
    return Api(ProxmoxClient(settings), journal), journal


@responses.activate
def test_migrate_request_is_form_encoded_with_token_header(api) -> None:
    client, journal = api
    responses.post(f"{BASE}/nodes/pve1/lxc/101/migrate", json={"data": UPID})
    result = client.post("/nodes/pve1/lxc/101/migrate", target="pve2", restart=1, timeout=60, bwlimit=None,
                         **{"target-storage": "local-zfs:tank"})
    assert result == UPID
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"PVEAPIToken=ferry@pve!migrate={SECRET}"
    assert dict(urllib.parse.parse_qsl(sent.body)) == {"target": "pve2", "restart": "1", "timeout": "60",
                                                       "target-storage": "local-zfs:tank"}
    (entry,) = journal.api()
    assert entry.what == "POST /nodes/pve1/lxc/101/migrate" and entry.status == 200
    assert entry.detail["upid"] == UPID and "bwlimit" not in entry.detail["params"]
    assert SECRET not in repr(entry)


@responses.activate
def test_parameter_errors_are_permanent_and_name_the_parameter(api) -> None:
    client, journal = api
    responses.post(f"{BASE}/nodes/pve1/lxc/101/migrate", status=400,
                   json={"data": None, "errors": {"target": "property is missing and it is not optional"}})
    with pytest.raises(ApiFailure) as err:
        client.post("/nodes/pve1/lxc/101/migrate")
    assert err.value.status == 400 and "target: property is missing" in str(err.value)
    assert journal.api()[0].status == 400


@responses.activate
def test_gets_retry_5xx_with_backoff_then_succeed(api) -> None:
    client, journal = api
    url = f"{BASE}/cluster/resources"
    responses.get(url, status=503)
    responses.get(url, status=596)
    responses.get(url, json={"data": []})
    assert client.get("/cluster/resources") == []
    assert [e.status for e in journal.api()] == [503, 596, 200]


@responses.activate
def test_gets_give_up_after_the_bound_and_posts_never_repeat(api) -> None:
    client, journal = api
    responses.get(f"{BASE}/cluster/tasks", status=502)
    with pytest.raises(TransientError):
        client.get("/cluster/tasks")
    assert len(responses.calls) == 3
    responses.post(f"{BASE}/nodes/pve1/lxc/101/status/start", status=503)
    with pytest.raises(ApiTransient):
        client.post("/nodes/pve1/lxc/101/status/start")
    assert len(responses.calls) == 4


@responses.activate
def test_connection_errors_are_transient_and_500_permanent(api) -> None:
    client, _ = api
    responses.get(f"{BASE}/nodes/pve1/lxc/101/migrate", body=requests.ConnectionError("refused"))
    with pytest.raises(ApiTransient):
        client.get("/nodes/pve1/lxc/101/migrate")
    assert len(responses.calls) == 3  # retried up to get_retries
    responses.post(f"{BASE}/nodes/pve1/lxc/101/migrate", status=500, json={"data": None})
    with pytest.raises(ApiFailure):
        client.post("/nodes/pve1/lxc/101/migrate", target="pve2")
    assert len(responses.calls) == 4  # three GET attempts, one POST: a refused POST is not repeated


def test_classification_of_status_lines() -> None:
    from adapters.proxmox.client import classify

    assert isinstance(classify("POST", "/x", 500, "CT is locked (backup)"), TransientError)
    assert isinstance(classify("POST", "/x", 500, "can't lock file '/run/lock/lxc/pve-config-101.lock' - got timeout"),
                      TransientError)
    assert isinstance(classify("POST", "/x", 500, "storage 'x' does not exist"), PermanentError)
    assert "token" in str(classify("GET", "/x", 401, "No ticket"))


def test_redaction_masks_secret_keys_and_values() -> None:
    out = redact({"password": "p", "ticket": "t", "description": f"has {SECRET}", "target": "pve2"}, SECRET)
    assert out == {"password": "***", "ticket": "***", "description": "***", "target": "pve2"}


def test_upid_parsing_and_exit_status_semantics() -> None:
    info = parse_upid(UPID)
    assert (info.node, info.type, info.id, info.user, info.starttime) == ("pve2", "vzmigrate", "101",
                                                                          "ferry@pve!migrate", 0x6740A1B2)
    assert exit_ok("OK") and exit_ok("WARNINGS: 3")
    assert not exit_ok("WARNINGS: x") and not exit_ok("migration aborted") and not exit_ok(None)
    with pytest.raises(PermanentError):
        parse_upid("UPID:bad")


@responses.activate
def test_wait_task_polls_the_node_named_in_the_upid_and_reports_the_log(api) -> None:
    client, _ = api
    url = f"{BASE}/nodes/pve2/tasks/{UPID}/status"
    responses.get(url, json={"data": {"status": "running", "upid": UPID}})
    responses.get(url, json={"data": {"status": "stopped", "exitstatus": "migration aborted", "upid": UPID}})
    responses.get(f"{BASE}/nodes/pve2/tasks/{UPID}/log",
                  json={"data": [{"n": 1, "t": "ERROR: zfs error: cannot receive"}, {"n": 2, "t": "TASK ERROR: migration aborted"}]})
    with pytest.raises(TaskFailed) as err:
        wait_task(client, UPID, StepContext(), timeout_s=5, poll_s=0.001)
    assert err.value.exitstatus == "migration aborted" and "cannot receive" in str(err.value)


@responses.activate
def test_discover_converts_bytes_fractions_and_tags(api) -> None:
    client, _ = api
    responses.get(f"{BASE}/cluster/resources", json={"data": [
        {"type": "node", "node": "pve1", "status": "online", "maxcpu": 32, "cpu": 0.0412,
         "maxmem": 135081332736, "mem": 60000000000},
        {"type": "storage", "node": "pve1", "storage": "local-zfs", "status": "available", "shared": 0,
         "maxdisk": 1932735283200, "disk": 966367641600},
        {"type": "lxc", "vmid": 101, "node": "pve1", "name": "web", "status": "running", "maxcpu": 2, "cpu": 0.35,
         "maxmem": 4294967296, "mem": 2202009600, "maxdisk": 42949672960, "disk": 1, "tags": "a;b"},
    ]})
    responses.get(f"{BASE}/cluster/ha/status/manager_status",
                  json={"data": {"manager_status": {"node_status": {"pve1": "maintenance"}}}})
    responses.get(f"{BASE}/cluster/ha/resources", json={"data": [{"sid": "ct:101"}]})
    responses.get(f"{BASE}/nodes/pve1/status", json={"data": {"kversion": "Linux 6.8.12-4-pve #1 SMP",
                                                              "pveversion": "pve-manager/8.3.1/fb48e850ef9dde27"}})
    responses.get(f"{BASE}/nodes/pve1/lxc/101/config", json={"data": {
        "rootfs": "local-zfs:subvol-101-disk-0,size=40G", "tags": "plb_pin_pve2;web",
        "net0": "name=eth0,bridge=vmbr0,ip=203.0.113.10/24,gw=203.0.113.1", "net1": "name=eth1,ip=dhcp,ip6=2001:db8::5/64",
        "lock": "backup"}})
    inv = discover(client)
    node, ct = inv.node("pve1"), inv.container("101")
    assert (node.cpus, node.memory_mb, node.cpu_usage, node.maintenance) == (32, 128824, 0.0412, True)
    assert (node.kernel, node.version) == ("6.8.12-4-pve", "8.3.1")
    assert node.storage["local-zfs"].total_gb == 1800 and node.storage["local-zfs"].used_gb == 900
    assert (ct.memory_mb, ct.memory_used_mb, ct.disk_gb, ct.cpus, ct.cpu_usage) == (4096, 2100, 40, 2, 0.35)
    assert ct.storage == "local-zfs" and ct.ha and ct.tags == ["plb_pin_pve2", "web"]
    assert ct.ips == ["203.0.113.10", "2001:db8::5"] and ct.model_extra["lock"] == "backup"


@pytest.mark.parametrize(("table", "key"), [
    ({"token_id": "ferry@pve!m", "token_secret_env": "PVE_SECRET"}, "proxmox.host"),
    ({"host": "pve", "token_id": "no-realm", "token_secret_env": "PVE_SECRET"}, "proxmox.token_id"),
    ({"host": "pve", "token_id": "f@pve!mig"}, "proxmox.token_secret_file"),
    ({"host": "pve", "token_id": "f@pve!mig", "token_secret_env": "UNSET_VAR_FOR_TEST"}, "proxmox.token_secret_env"),
    ({"host": "pve", "token_id": "f@pve!mig", "token_secret_file": "/nonexistent/secret"}, "proxmox.token_secret_file"),
    ({"host": "pve", "token_id": "f@pve!mig", "token_secret_env": "PVE_SECRET", "port": 70000}, "proxmox.port"),
    ({"host": "pve", "token_id": "f@pve!mig", "token_secret_env": "PVE_SECRET", "verify_ssl": "no"}, "proxmox.verify_ssl"),
    ({"host": "pve", "token_id": "f@pve!mig", "token_secret_env": "PVE_SECRET", "bwlimit_kib": -5}, "proxmox.bwlimit_kib"),
    ({"host": "pve", "token_id": "f@pve!mig", "token_secret_env": "PVE_SECRET", "storage_map": {"a": "b c"}},
     "proxmox.storage_map.a"),
    ({"host": "pve", "token_id": "f@pve!mig", "token_secret_env": "PVE_SECRET", "colour": 1}, "proxmox.colour"),
])
def test_bad_settings_name_key_and_value(monkeypatch, table, key) -> None:
    monkeypatch.setenv("PVE_SECRET", SECRET)
    with pytest.raises(InputError) as err:
        create_backend(table)
    assert err.value.key == key and "\n" not in str(err.value) and SECRET not in str(err.value)


def test_secret_from_file_is_read_and_not_in_repr(tmp_path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    settings = parse_settings({"host": "pve", "token_id": "f@pve!mig", "token_secret_file": str(path)})
    assert settings.token_secret == SECRET and SECRET not in repr(settings)
    assert settings.verify_ssl and settings.token_id == "f@pve!mig"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_secret_file_readable_by_others_is_refused_in_one_line(tmp_path, mode) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    path.chmod(mode)
    with pytest.raises(InputError) as err:
        parse_settings({"host": "pve", "token_id": "f@pve!mig", "token_secret_file": str(path)})
    line = str(err.value)
    assert err.value.key == "proxmox.token_secret_file" and "chmod 600" in line and f"{mode:04o}" in line
    assert "\n" not in line and SECRET not in line
