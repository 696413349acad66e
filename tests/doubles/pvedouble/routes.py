"""The endpoints the double serves: real paths under /api2/json, real parameter names and types
(pve-docs api-viewer / apidoc.js). Each route: method, path pattern, parameter spec, handler."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from tests.doubles.pvedouble import backups, cluster, guests, remote
from tests.doubles.pvedouble.model import MIB, ApiError
from tests.doubles.pvedouble.params import Spec
from tests.doubles.pvedouble.world import World

Handler = Callable[[World, dict[str, str], dict[str, Any], str], Any]
ROUTES: list[tuple[str, re.Pattern[str], Spec, Handler]] = []
_NODE = r"(?P<node>[^/]+)"
_VMID = r"(?P<vmid>[^/]+)"


def route(method: str, pattern: str, spec: Spec | None = None) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        regex = re.compile("^" + pattern.replace("{node}", _NODE).replace("{vmid}", _VMID) + "$")
        ROUTES.append((method, regex, spec or {}, fn))
        return fn
    return register


def find(method: str, path: str) -> tuple[Spec, Handler, dict[str, str]]:
    known_path = False
    for m, regex, spec, fn in ROUTES:
        match = regex.match(path)
        if match:
            known_path = True
            if m == method:
                return spec, fn, match.groupdict()
    if known_path:
        raise ApiError(501, f"Method '{method} {path}' not implemented")
    raise ApiError(501, f"Method '{method} {path}' not implemented")


def _vmid(pp: dict[str, str]) -> int:
    if not pp["vmid"].isdigit():
        raise ApiError(400, "Parameter verification failed.", {"vmid": f"type check ('integer') failed - got '{pp['vmid']}'"})
    return int(pp["vmid"])


# -- cluster --------------------------------------------------------------------------------
@route("GET", "/cluster/resources", {"type": (("vm", "storage", "node", "sdn"), False)})
def resources(w: World, pp, p, user):
    rows: list[dict[str, Any]] = []
    for n in w.nodes.values():
        mem = sum(g.mem_used for g in w.guests.values() if g.node == n.name and g.status == "running")
        rows.append({"id": f"node/{n.name}", "type": "node", "node": n.name, "status": "online" if n.online else "offline",
                     "maxcpu": n.cpus, "cpu": n.cpu if n.online else 0, "maxmem": n.memory, "mem": mem,
                     "maxdisk": 100 << 30, "disk": 20 << 30, "level": "", "uptime": 86400})
        for s in n.storages.values():
            rows.append({"id": f"storage/{n.name}/{s.storage}", "type": "storage", "storage": s.storage,
                         "node": n.name, "status": "available", "shared": int(s.shared), "plugintype": s.plugintype,
                         "content": s.content, "maxdisk": s.total, "disk": s.used})
    for g in w.guests.values():
        row = {"id": f"lxc/{g.vmid}", "type": "lxc", "vmid": g.vmid, "node": g.node, "name": g.hostname,
               "status": g.status, "maxmem": g.memory_mib * MIB, "mem": g.mem_used if g.status == "running" else 0,
               "maxcpu": int(g.cores) if g.cores == int(g.cores) else g.cores,
               "cpu": g.cpu if g.status == "running" else 0, "maxdisk": g.maxdisk,
               "disk": g.disk_used, "template": 0, "uptime": 1000 if g.status == "running" else 0}
        if g.tags:
            row["tags"] = ";".join(g.tags)
        if g.lock:
            row["lock"] = g.lock
        if f"ct:{g.vmid}" in w.ha:
            row["hastate"] = w.ha[f"ct:{g.vmid}"].current
        rows.append(row)
    kind = p.get("type")
    if kind == "vm":
        return [r for r in rows if r["type"] in ("lxc", "qemu")]
    return [r for r in rows if kind is None or r["type"] == kind]


@route("GET", "/cluster/tasks")
def cluster_tasks(w: World, pp, p, user):
    return [t.listing() for t in sorted(w.tasks.values(), key=lambda t: t.starttime, reverse=True)]


@route("GET", "/cluster/status")
def cluster_status(w: World, pp, p, user):
    return remote.cluster_status(w)


@route("GET", "/cluster/nextid", {"vmid": ("vmid", False)})
def nextid(w: World, pp, p, user):
    return cluster.nextid(w, p)


@route("GET", "/cluster/ha/resources", {"type": (("ct", "vm"), False)})
def ha_resources(w: World, pp, p, user):
    return [{"sid": sid, "type": "ct", "state": st.state, "max_restart": 1, "max_relocate": 1}
            for sid, st in sorted(w.ha.items())]


@route("GET", "/cluster/ha/status/current")
def ha_current(w: World, pp, p, user):
    return cluster.ha_status_current(w)


@route("GET", "/cluster/ha/status/manager_status")
def ha_manager_status(w: World, pp, p, user):
    """As pve-ha-manager's PVE::API2::HA::Status: the CRM's manager status (node_request holds a
    maintenance the CRM was asked for by ``ha-manager crm-command node-maintenance enable`` and
    node_status says "maintenance" once the node's LRM entered it), the quorum, each LRM's status."""
    master = next(iter(w.nodes))
    status = {n.name: ("maintenance" if n.maintenance else "online" if n.online else "unknown") for n in w.nodes.values()}
    requests = {n.name: {"maintenance": 1} for n in w.nodes.values() if n.maintenance or n.maintenance_requested}
    stamp = int(time.time())
    lrm = {n.name: {"mode": "maintenance" if n.maintenance else "active", "state": "wait_for_agent_lock",
                    "timestamp": stamp, "results": {}} for n in w.nodes.values()}
    return {"manager_status": {"master_node": master, "timestamp": stamp, "node_status": status,
                               "node_request": requests,
                               "service_status": {sid: {"node": w.guests[int(sid[3:])].node, "state": st.current}
                                                  for sid, st in w.ha.items()}},
            "quorum": {"node": master, "quorate": 1}, "lrm_status": lrm}


@route("PUT", "/cluster/ha/resources/(?P<sid>[^/]+)", {"state": (("started", "stopped", "enabled", "disabled", "ignored"), False),
                                                        "comment": ("string", False)})
def ha_set(w: World, pp, p, user):
    st = w.ha.get(pp["sid"])
    if st is None:
        raise ApiError(500, f"no such resource '{pp['sid']}'")
    if "state" in p:
        st.state = p["state"]
        guest = w.guests[int(pp["sid"].split(":")[1])]
        guest.status = "running" if p["state"] in ("started", "enabled") else "stopped"
        st.current = "started" if guest.status == "running" else "stopped"
    return None


@route("POST", "/cluster/ha/resources/(?P<sid>[^/]+)/(?P<kind>migrate|relocate)", {"node": ("node", True)})
def ha_move(w: World, pp, p, user):
    w.node(p["node"])
    cluster.request_ha(w, pp["sid"], pp["kind"], p["node"])
    return None


@route("GET", "/cluster/replication")
def repl_list(w: World, pp, p, user):
    return [j.config() for j in w.replication.values()]


@route("POST", "/cluster/replication", {"id": ("string", True), "target": ("node", True), "type": (("local",), True),
                                        "schedule": ("string", False), "rate": ("number", False),
                                        "comment": ("string", False), "disable": ("boolean", False),
                                        "remove_job": (("local", "full"), False), "source": ("node", False)})
def repl_create(w: World, pp, p, user):
    cluster.replication_create(w, p)


@route("DELETE", "/cluster/replication/(?P<id>[^/]+)", {"keep": ("boolean", False), "force": ("boolean", False)})
def repl_delete(w: World, pp, p, user):
    cluster.replication_delete(w, pp["id"])


# -- nodes ----------------------------------------------------------------------------------
@route("GET", "/nodes/{node}/status")
def node_status(w: World, pp, p, user):
    n = w.node(pp["node"])
    return {"cpu": n.cpu, "cpuinfo": {"cpus": n.cpus}, "memory": {"total": n.memory},
            "kversion": f"Linux {n.kernel or '6.8.12-4-pve'} #1 SMP PREEMPT_DYNAMIC PMX",
            "current-kernel": {"release": n.kernel or "6.8.12-4-pve", "sysname": "Linux"},
            "pveversion": f"pve-manager/{n.version or '8.3.1'}/fb48e850ef9dde27"}


@route("GET", "/nodes/{node}/tasks/(?P<upid>[^/]+)/status")
def task_status(w: World, pp, p, user):
    return w.task(pp["node"], pp["upid"]).status()


@route("GET", "/nodes/{node}/tasks/(?P<upid>[^/]+)/log", {"start": ("integer", False), "limit": ("integer", False),
                                                           "download": ("boolean", False)})
def task_log(w: World, pp, p, user):
    lines = w.task(pp["node"], pp["upid"]).log
    start, limit = p.get("start", 0), p.get("limit", 50)
    return [{"n": i + 1, "t": t} for i, t in enumerate(lines)][start:start + limit]


@route("GET", "/nodes/{node}/lxc/{vmid}/config", {"current": ("boolean", False), "snapshot": ("string", False)})
def ct_config(w: World, pp, p, user):
    return w.guest_on(pp["node"], _vmid(pp)).config()


@route("PUT", "/nodes/{node}/lxc/{vmid}/config", {f"net{i}": ("string", False) for i in range(10)} | {
    "tags": ("string", False), "hostname": ("string", False), "delete": ("string", False),
    "digest": ("string", False), "description": ("string", False), "onboot": ("boolean", False)})
def ct_set_config(w: World, pp, p, user):
    guests.put_config(w, pp["node"], _vmid(pp), {k: v for k, v in p.items() if k not in ("digest", "description")})


@route("GET", "/nodes/{node}/lxc/{vmid}/status/current")
def ct_current(w: World, pp, p, user):
    return guests.status_current(w, pp["node"], _vmid(pp))


@route("POST", "/nodes/{node}/lxc/{vmid}/status/start", {"skiplock": ("boolean", False), "debug": ("boolean", False)})
def ct_start(w: World, pp, p, user):
    return guests.set_power(w, pp["node"], _vmid(pp), "start", user)


@route("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown", {"timeout": ("integer", False), "forceStop": ("boolean", False)})
def ct_shutdown(w: World, pp, p, user):
    return guests.set_power(w, pp["node"], _vmid(pp), "shutdown", user)


@route("POST", "/nodes/{node}/lxc/{vmid}/status/stop", {"skiplock": ("boolean", False), "overrule-shutdown": ("boolean", False)})
def ct_stop(w: World, pp, p, user):
    return guests.set_power(w, pp["node"], _vmid(pp), "stop", user)


@route("GET", "/nodes/{node}/lxc/{vmid}/migrate", {"target": ("node", False)})
def ct_migrate_check(w: World, pp, p, user):
    return guests.precondition(w, pp["node"], _vmid(pp), p)


@route("POST", "/nodes/{node}/lxc/{vmid}/migrate", {"target": ("node", True), "target-storage": ("string", False),
                                                    "online": ("boolean", False), "restart": ("boolean", False),
                                                    "timeout": ("integer", False), "bwlimit": ("number>=0", False)})
def ct_migrate(w: World, pp, p, user):
    return guests.migrate(w, pp["node"], _vmid(pp), p, user)


@route("POST", "/nodes/{node}/lxc/{vmid}/remote_migrate", {
    "target-endpoint": ("string", True), "target-storage": ("string", True), "target-bridge": ("string", True),
    "target-vmid": ("vmid", False), "online": ("boolean", False), "restart": ("boolean", False),
    "timeout": ("integer", False), "delete": ("boolean", False), "bwlimit": ("number>=0", False)})
def ct_remote_migrate(w: World, pp, p, user):
    return remote.remote_migrate(w, pp["node"], _vmid(pp), p, user)


@route("DELETE", "/nodes/{node}/lxc/{vmid}", {"purge": ("boolean", False), "force": ("boolean", False),
                                              "destroy-unreferenced-disks": ("boolean", False)})
def ct_destroy(w: World, pp, p, user):
    return guests.destroy(w, pp["node"], _vmid(pp), user, purge=bool(p.get("purge")))


@route("POST", "/nodes/{node}/lxc", {"vmid": ("vmid", True), "ostemplate": ("string", True), "restore": ("boolean", False),
                                     "storage": ("storage", False), "force": ("boolean", False),
                                     "unique": ("boolean", False), "start": ("boolean", False),
                                     "hostname": ("string", False), "tags": ("string", False),
                                     "bwlimit": ("number>=0", False),
                                     # what a restore may set anew (pct(1) "Container Settings")
                                     "memory": ("integer", False), "swap": ("integer", False),
                                     "rootfs": ("string", False), "unprivileged": ("boolean", False),
                                     "ostype": ("string", False), "onboot": ("boolean", False),
                                     "cores": ("integer", False), "cpulimit": ("number>=0", False),
                                     "nameserver": ("string", False), "searchdomain": ("string", False)}
       | {f"net{i}": ("string", False) for i in range(10)})
def ct_create(w: World, pp, p, user):
    return backups.restore(w, pp["node"], p, user)


@route("POST", "/nodes/{node}/vzdump", {"vmid": ("string", True), "mode": (("snapshot", "suspend", "stop"), False),
                                        "storage": ("storage", False), "compress": (("0", "1", "gzip", "lzo", "zstd"), False),
                                        "bwlimit": ("integer>=0", False), "remove": ("boolean", False),
                                        "notes-template": ("string", False), "stopwait": ("integer", False)})
def node_vzdump(w: World, pp, p, user):
    return backups.vzdump(w, pp["node"], p, user)


@route("GET", "/nodes/{node}/storage/(?P<storage>[^/]+)/content", {"content": ("string", False), "vmid": ("vmid", False)})
def storage_content(w: World, pp, p, user):
    return backups.content(w, pp["node"], pp["storage"], p)


@route("POST", "/nodes/{node}/replication/(?P<id>[^/]+)/schedule_now")
def repl_now(w: World, pp, p, user):
    w.node(pp["node"])
    return cluster.schedule_now(w, pp["node"], pp["id"])


@route("GET", "/nodes/{node}/replication/(?P<id>[^/]+)/status")
def repl_status(w: World, pp, p, user):
    w.node(pp["node"])
    return cluster.job_status(w, pp["node"], pp["id"])
