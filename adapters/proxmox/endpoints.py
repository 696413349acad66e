"""Every endpoint and parameter the adapter sends, with the upstream definition it follows.

The API viewer (https://pve.proxmox.com/pve-docs/api-viewer/) is generated from the
``register_method`` schemas in these sources; a test checks that every call in the journal of the
end-to-end tests matches a row here, with only the parameters listed.
"""

from __future__ import annotations

import re

VIEWER = "https://pve.proxmox.com/pve-docs/api-viewer/#"

#: (method, path template) -> (parameters ferry sends, upstream source of the definition)
ENDPOINTS: dict[tuple[str, str], tuple[frozenset[str], str]] = {
    ("GET", "/cluster/resources"): (frozenset({"type"}), "pve-manager PVE/API2/Cluster.pm resources"),
    ("GET", "/cluster/tasks"): (frozenset(), "pve-manager PVE/API2/Cluster.pm tasks"),
    ("GET", "/cluster/nextid"): (frozenset({"vmid"}), "pve-manager PVE/API2/Cluster.pm nextid"),
    ("GET", "/cluster/ha/resources"): (frozenset(), "pve-ha-manager src/PVE/API2/HA/Resources.pm index"),
    ("POST", "/cluster/ha/resources/{sid}/migrate"): (frozenset({"node"}),
                                                      "pve-ha-manager src/PVE/API2/HA/Resources.pm migrate"),
    ("GET", "/cluster/ha/status/current"): (frozenset(), "pve-ha-manager src/PVE/API2/HA/Status.pm status"),
    ("GET", "/cluster/ha/status/manager_status"): (frozenset(),
                                                    "pve-ha-manager src/PVE/API2/HA/Status.pm manager_status"),
    ("GET", "/cluster/replication"): (frozenset(), "pve-manager PVE/API2/ReplicationConfig.pm index"),
    ("POST", "/cluster/replication"): (frozenset({"id", "target", "type", "schedule", "rate", "comment"}),
                                       "pve-manager PVE/API2/ReplicationConfig.pm create"),
    ("DELETE", "/cluster/replication/{id}"): (frozenset(), "pve-manager PVE/API2/ReplicationConfig.pm delete"),
    ("POST", "/nodes/{node}/replication/{id}/schedule_now"): (frozenset(),
                                                              "pve-manager PVE/API2/Replication.pm schedule_now"),
    ("GET", "/nodes/{node}/replication/{id}/status"): (frozenset(), "pve-manager PVE/API2/Replication.pm job_status"),
    ("GET", "/nodes/{node}/status"): (frozenset(), "pve-manager PVE/API2/Nodes.pm status"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"): (frozenset(), "pve-manager PVE/API2/Tasks.pm read_task_status"),
    ("GET", "/nodes/{node}/tasks/{upid}/log"): (frozenset({"start", "limit"}), "pve-manager PVE/API2/Tasks.pm read_task_log"),
    ("GET", "/nodes/{node}/lxc/{vmid}/config"): (frozenset(), "pve-container src/PVE/API2/LXC/Config.pm vm_config"),
    ("PUT", "/nodes/{node}/lxc/{vmid}/config"): (frozenset({"tags"} | {f"net{i}" for i in range(32)}),
                                                 "pve-container src/PVE/API2/LXC/Config.pm update_vm"),
    ("GET", "/nodes/{node}/lxc/{vmid}/status/current"): (frozenset(),
                                                         "pve-container src/PVE/API2/LXC/Status.pm vm_status"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/start"): (frozenset(), "pve-container src/PVE/API2/LXC/Status.pm vm_start"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown"): (frozenset({"timeout", "forceStop"}),
                                                           "pve-container src/PVE/API2/LXC/Status.pm vm_shutdown"),
    ("GET", "/nodes/{node}/lxc/{vmid}/migrate"): (frozenset({"target"}),
                                                  "pve-container src/PVE/API2/LXC.pm migrate_vm_precondition"),
    ("POST", "/nodes/{node}/lxc/{vmid}/migrate"): (frozenset({"target", "restart", "timeout", "bwlimit", "target-storage"}),
                                                   "pve-container src/PVE/API2/LXC.pm migrate_vm"),
    ("POST", "/nodes/{node}/lxc"): (frozenset({"vmid", "ostemplate", "restore", "unique", "storage", "tags",
                                               "hostname", "bwlimit", "memory", "swap", "rootfs", "cores",
                                               "cpulimit", "unprivileged", "ostype", "onboot", "nameserver",
                                               "searchdomain"} | {f"net{i}" for i in range(32)}),
                                    "pve-container src/PVE/API2/LXC.pm create_vm (restore; the other keys: "
                                    "src/PVE/LXC/Config.pm confdesc, as pct restore passes them)"),
    ("POST", "/nodes/{node}/lxc/{vmid}/remote_migrate"): (
        frozenset({"target-endpoint", "target-storage", "target-bridge", "target-vmid", "restart", "delete",
                   "bwlimit", "timeout"}),
        "pve-container src/PVE/API2/LXC.pm remote_migrate_vm (EXPERIMENTAL; CLI pct remote-migrate)"),
    ("GET", "/cluster/status"): (frozenset(), "pve-manager PVE/API2/Cluster.pm get_status"),
    ("DELETE", "/nodes/{node}/lxc/{vmid}"): (frozenset({"purge"}), "pve-container src/PVE/API2/LXC.pm destroy_vm"),
    ("POST", "/nodes/{node}/vzdump"): (frozenset({"vmid", "mode", "storage", "compress", "bwlimit"}),
                                       "pve-manager PVE/API2/VZDump.pm vzdump"),
    ("GET", "/nodes/{node}/storage/{storage}/content"): (frozenset({"content", "vmid"}),
                                                         "pve-storage src/PVE/API2/Storage/Content.pm index"),
}


def _regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[a-z]+\}", "[^/]+", template) + "$")


_COMPILED = [(method, _regex(path), path) for method, path in ENDPOINTS]


def cited(method: str, path: str) -> str | None:
    """The ENDPOINTS template a concrete call matches, or None."""
    for m, regex, template in _COMPILED:
        if m == method and regex.match(path):
            return template
    return None


def doc_url(template: str) -> str:
    """The API viewer page of an endpoint template."""
    return VIEWER + template
