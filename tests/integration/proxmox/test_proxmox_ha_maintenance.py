"""Proxmox HA node maintenance: read from the manager status (the real endpoint's format, as the
double serves it) so that such a node receives nothing, and set / cleared by the command line
``ha-manager crm-command node-maintenance enable|disable NODE`` that ferry runs over SSH."""

from __future__ import annotations

import pytest

from adapters.base import JournalEntry, PermanentError
from adapters.proxmox import create_backend
from adapters.proxmox.hamaint import maintenance_argv, set_node_maintenance
from service.nodes import apply_node_states
from tests.doubles.pvedouble.fixtures import make_double, pve_double, settings_for  # noqa: F401 - fixtures


@pytest.fixture
def backend(pve_double, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FERRY_TEST_PVE_SECRET", pve_double.token_secret)
    return create_backend(settings_for(pve_double))


class CrmDouble:
    """Plays the HA CRM's side of ``ha-manager crm-command``: a request is recorded at once, the
    LRM enters maintenance on the CRM's next round (``round()``)."""

    def __init__(self, world) -> None:
        self.world = world
        self.ran: list[tuple[str, list[str]]] = []

    def run(self, node, argv, journal, *, timeout=None, check=True, stdin=None):
        self.ran.append((node, list(argv)))
        journal(JournalEntry(host=node, what=list(argv), status=0, duration_ms=0.0))
        assert argv[:3] == ["ha-manager", "crm-command", "node-maintenance"]
        target = self.world.nodes[argv[4]]
        target.maintenance_requested = argv[3] == "enable"
        if argv[3] == "disable":
            target.maintenance = False

    def round(self) -> None:
        for node in self.world.nodes.values():
            node.maintenance = node.maintenance or node.maintenance_requested


def test_a_node_in_or_entering_ha_maintenance_receives_nothing(pve_double, backend) -> None:  # noqa: F811
    crm = CrmDouble(pve_double.world)
    journal: list[JournalEntry] = []
    set_node_maintenance(crm, "pve1", "pve3", True, journal.append)
    assert crm.ran == [("pve1", ["ha-manager", "crm-command", "node-maintenance", "enable", "pve3"])]
    assert journal[0].what == crm.ran[0][1]
    requested = backend.discover()  # requested, not yet entered: already receives nothing
    assert requested.node("pve3").maintenance and not requested.node("pve3").receives
    crm.round()
    entered = backend.discover()
    assert entered.node("pve3").maintenance and entered.node("pve2").receives
    assert not apply_node_states(entered, {}).node("pve3").receives
    set_node_maintenance(crm, "pve1", "pve3", False, journal.append)
    assert backend.discover().node("pve3").receives


@pytest.mark.parametrize("node", ["pve3; reboot", "-x", "", "a" * 64, "pve 3", "$(id)"])
def test_a_node_name_that_is_not_one_never_reaches_ssh(node: str) -> None:
    with pytest.raises(PermanentError, match="not a Proxmox node name"):
        maintenance_argv(node, True)
    assert maintenance_argv("pve-node-7", False) == ["ha-manager", "crm-command", "node-maintenance",
                                                     "disable", "pve-node-7"]
