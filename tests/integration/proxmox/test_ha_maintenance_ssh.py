"""Proxmox HA node maintenance set and cleared by ferry itself over real SSH: a lab host (network
namespace with its own sshd, tests/doubles/lab) plays the cluster node, a fake ``ha-manager`` on it
records its arguments. A drain sets maintenance before anything moves, a restore clears it before
the containers come back, each command journaled in its job; a refused drain never reaches SSH."""

from __future__ import annotations

import pytest

from service.campaign_hooks import HaSshSection, MaintenanceSection
from service.jobs import JobConflict, job_detail
from service.operations import nodes as node_ops
from service.operations.execution import run_here
from service.runtime import Runtime
from tests.conftest import sim_config
from tests.doubles.lab.netlab import Lab, missing_binaries

if missing_binaries():
    pytest.skip(f"the lab needs: {', '.join(missing_binaries())}", allow_module_level=True)

pytestmark = [pytest.mark.lab]

FAKE_HA_MANAGER = """#!/bin/sh
# Records what ferry asked of the HA stack, as the CRM would queue it.
echo "$(hostname) $*" >> /var/lib/ferry/ha-manager.log
"""


@pytest.fixture(scope="module")
def lab():
    with Lab().up(1) as lab:
        tool = lab.base / "bin" / "ha-manager"  # /usr/local/sbin on the lab hosts
        tool.write_text(FAKE_HA_MANAGER)
        tool.chmod(0o755)
        yield lab


def ha_log(lab: Lab) -> list[str]:
    log = lab.nodes["n1"].path("ferry") / "ha-manager.log"
    return log.read_text().splitlines() if log.exists() else []


def test_drain_sets_and_restore_clears_ha_maintenance_over_ssh(lab: Lab, tmp_path) -> None:
    ha = HaSshSection(node="n1", host=lab.nodes["n1"].addr, identity_file=str(lab.identity),
                      known_hosts_file=str(lab.known_hosts))
    rt = Runtime(sim_config(tmp_path).model_copy(update={"maintenance": MaintenanceSection(ha=ha)}))
    drain = node_ops.drain_node(rt, "a", node_ops.NodeDrainRequest(approve=True)).job_id
    assert ha_log(lab) == ["n1 crm-command node-maintenance enable a"]
    journal = job_detail(rt.sessions, drain)["journal"]
    assert [(e["host"], e["what"], e["status"]) for e in journal if e["step"] == "ha-maintenance"] == [
        ("n1", ["ha-manager", "crm-command", "node-maintenance", "enable", "a"], 0)]
    assert journal[0]["step"] == "ha-maintenance"  # before any step of any move
    with pytest.raises(JobConflict):  # refused before SSH: the node is being drained
        node_ops.drain_node(rt, "a", node_ops.NodeDrainRequest(approve=True))
    assert len(ha_log(lab)) == 1
    assert run_here(rt, drain).state == "succeeded"
    restore = node_ops.restore_node(rt, "a", node_ops.NodeRestoreRequest(approve=True))
    assert ha_log(lab)[1:] == ["n1 crm-command node-maintenance disable a"]
    entries = [e for e in job_detail(rt.sessions, restore.job_id)["journal"] if e["step"] == "ha-maintenance"]
    assert [(e["what"][3], e["status"]) for e in entries] == [("disable", 0)]
    assert run_here(rt, restore.job_id).state == "succeeded"
