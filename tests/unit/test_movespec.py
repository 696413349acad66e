"""The typed engine -> backend contract: a stored move becomes a MoveSpec (service/movespec.py),
and every backend honours or refuses each request of it (adapters/base.py ``Backend.refuses``),
refusing before any step touches a node."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import openvz, proxmox, sim
from adapters.base import REQUESTS, MoveSpec, RefusedError, Step, StepContext, run_step
from fleet.plan import Move
from fleet.policy import Policy
from service.movespec import build_spec, move_options
from service.store import MoveRow

DEMO_FLEET = Path(__file__).resolve().parents[2] / "config" / "fleets" / "demo.yaml"
#: A value that requests each field (differs from its default).
ASKED = {"target_ct": "9001", "ips": ("10.9.0.1",), "gateway": "10.9.0.254", "hostname": "renamed", "target_storage": "ceph",
         "bwlimit_mb_s": 5.0, "ports": (80,), "backup": True}
READDRESS = {"target_ct", "ips", "gateway", "hostname"}


def _row(**options: object) -> MoveRow:
    return MoveRow(ct="101", source="n1", target="n2", method="restart", options=options)


def test_build_spec_carries_stored_requests_the_job_as_owner_and_the_budget_share() -> None:
    policy = Policy(max_outgoing_per_node=2, node_bandwidth_budget_mb_s={"n1": 12.0})
    spec = build_spec(_row(target_storage="ceph", target_ct="201", ips=["10.0.0.9"], ports=["80"]),
                      7, policy)
    assert (spec.ct, spec.source, spec.target, spec.method) == ("101", "n1", "n2", "restart")
    assert (spec.target_storage, spec.target_ct, spec.ips, spec.ports) == ("ceph", "201", ("10.0.0.9",), (80,))
    assert spec.owner == "job-7" and spec.bwlimit_mb_s == 6.0 and spec.bwlimit_kib == 6144
    assert set(spec.requested()) == {"target_storage", "target_ct", "ips", "ports", "bwlimit_mb_s"}


def test_build_spec_without_budget_or_requests_asks_for_nothing() -> None:
    spec = build_spec(_row(), 3, Policy())
    assert spec.requested() == () and spec.bwlimit_kib is None and spec.owner == "job-3"
    assert build_spec(_row(), 3, None).bwlimit_mb_s is None


def test_an_unknown_stored_option_is_an_error_not_dropped() -> None:
    with pytest.raises(ValueError, match="colour"):
        build_spec(_row(colour="red"), 1, None)


def test_a_new_address_reaches_the_spec_with_its_subnets_gateway() -> None:
    move = Move.model_validate({"ct": "1", "from": "a", "to": "b", "address": {
        "from": "10.0.1.5", "to": "10.0.2.7", "network": "lan-b", "gateway": "10.0.2.1",
        "ips": ["10.0.2.7/24"]}})
    options = move_options(move)
    assert options == {"ips": ["10.0.2.7/24"], "gateway": "10.0.2.1"}
    spec = build_spec(_row(**options), 1, None)
    assert spec.ips == ("10.0.2.7/24",) and spec.gateway == "10.0.2.1"


def test_plan_move_stores_target_storage_only_when_set() -> None:
    plain = Move.model_validate({"ct": "1", "from": "a", "to": "b"})
    assert move_options(plain) == {}
    assert move_options(plain.model_copy(update={"target_storage": "ceph"})) == {"target_storage": "ceph"}


@pytest.mark.parametrize("mb_s,kib", [(3.0, 3072), (0.25, 256), (0.0001, 1), (None, None)])
def test_cap_in_kib_per_second_never_rounds_to_no_limit(mb_s: float | None, kib: int | None) -> None:
    assert MoveSpec("1", "a", "b", bwlimit_mb_s=mb_s).bwlimit_kib == kib


@pytest.fixture()
def backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """One backend of each kind; the real ones point at loopback port 9, so a step that acted
    instead of refusing would fail at once, sending nothing anywhere."""
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", "not-used")
    (tmp_path / "id").write_text("key")
    (tmp_path / "kh").write_text("")
    made = {
        "sim": sim.create_backend({"world_file": str(tmp_path / "world.json"),
                                   "fleet_file": str(DEMO_FLEET)}),
        "openvz": openvz.create_backend({"identity_file": str(tmp_path / "id"),
                                         "known_hosts_file": str(tmp_path / "kh"),
                                         "connect_timeout_s": 1,
                                         "nodes": {"n1": {"host": "127.0.0.1", "port": 9},
                                                   "n2": {"host": "127.0.0.1", "port": 9}}}),
        "proxmox": proxmox.create_backend({"host": "127.0.0.1", "port": 9, "token_id": "ferry@pve!migrate",
                                           "token_secret_env": "FERRY_TEST_PVE_SECRET", "timeout_s": 1}),
    }
    yield made
    for backend in made.values():
        backend.close()


#: What each backend refuses, per method, asked for the values in ASKED; everything else in
#: REQUESTS it honours (``bwlimit_mb_s`` always: every backend carries the bandwidth budget).
REFUSED = {
    ("sim", "live"): READDRESS | {"ports", "backup"},
    ("sim", "restart"): READDRESS | {"ports", "backup"},
    ("sim", "dump"): READDRESS | {"ports", "backup"},
    ("openvz", "live"): READDRESS | {"target_storage"},
    ("openvz", "restart"): {"target_storage"},
    ("openvz", "dump"): {"target_storage"},
    ("proxmox", "live"): READDRESS | {"ports", "backup"},
    ("proxmox", "restart"): READDRESS | {"ports", "backup"},
    ("proxmox", "dump"): {"ports", "backup"},
}


@pytest.mark.parametrize("name,method", sorted(REFUSED))
def test_each_backend_honours_or_refuses_every_request(backends, name: str, method: str) -> None:
    backend = backends[name]
    assert backend.refusals(MoveSpec("101", "n1", "n2", method=method)) == {}  # type: ignore[arg-type]
    for field in REQUESTS:
        asking = MoveSpec("101", "n1", "n2", method=method, **{field: ASKED[field]})  # type: ignore[arg-type]
        assert asking.requested() == (field,)
        refused = backend.refusals(asking)
        assert set(refused) == ({field} & REFUSED[(name, method)]), (field, refused)
        if not refused:
            continue
        with pytest.raises(RefusedError) as refusal:  # refused before any command or call
            run_step(backend, Step.PREFLIGHT, asking, StepContext())
        assert str(refusal.value) == f"{field}: {refused[field]}"


def test_openvz_honours_its_one_storage_id_and_refuses_others(backends) -> None:
    backend = backends["openvz"]
    assert backend.refusals(MoveSpec("101", "n1", "n2", target_storage="vz")) == {}
    assert "no storage ids but 'vz'" in backend.refusals(MoveSpec("101", "n1", "n2", target_storage="ceph"))[
        "target_storage"]


def test_a_refusal_names_every_refused_request(backends) -> None:
    spec = MoveSpec("101", "n1", "n2", target_storage="ceph", ips=("10.0.0.1",), method="live")
    with pytest.raises(RefusedError) as refusal:
        run_step(backends["openvz"], Step.PREFLIGHT, spec, StepContext())
    assert str(refusal.value).startswith("ips: ") and "; target_storage: the OpenVZ backend has no storage ids" \
        in str(refusal.value)
