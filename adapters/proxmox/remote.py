"""A move from one Proxmox VE cluster to another: ``remote_migrate`` where the source offers it,
else vzdump -> shared backup storage -> restore. The CT keeps its VMID (or the move's
``target_ct``), config, MAC addresses and tags; bridges and storages are mapped.

    preflight  CT on the source node, not HA-managed (PVE refuses remote migration of HA
               resources), target node online, target VMID free on the target cluster;
               "live" is refused (LXC has no live migration) -> the engine falls back to restart
               "restart": remote_migrate lands on the node answering the endpoint (LXC.pm asks it
               GET /cluster/status for its ``local`` node), so that must be the target: from
               the target cluster's ``node_hosts`` or its ``host``; else refused -> dump
    cutover    restart: POST source /nodes/{node}/lxc/{vmid}/remote_migrate {target-endpoint =
                 apitoken=PVEAPIToken=..,host=..,port=..,fingerprint=.., target-storage (explicit
                 pairs: PVE refuses the identity map), target-bridge, target-vmid, restart,
                 delete=0, bwlimit, timeout} -> UPID on the source cluster, followed to its end;
                 the source refusing it (501: a release before 7.3; 400: no such parameters)
                 raises RefusedError -> the engine rolls back (nothing changed) and falls back
               dump: the source stopped, vzdump to its ``backup_storage``; the archive must be
                 listed on the target cluster's ``backup_storage`` (one storage both clusters
                 mount: NFS, CIFS or a Proxmox Backup Server datastore) -> POST target
                 /nodes/{node}/lxc {vmid, ostemplate, restore=1, storage, bwlimit} (no
                 ``unique``: the MACs stay, the CT leaves its cluster); bridges rewritten by map
               then the copy started if the source ran
    verify     the copy runs (if the source ran) unlocked on the target node, with the source's
               config key by key (bridges and rootfs storage mapped; digest and lock aside);
               the source is stopped
    cleanup    the source is deleted by ferry, only now: ``delete=0`` is sent, so PVE keeps it
               stopped and locked ``migrate`` (LXC/Migrate.pm final_cleanup clears the lock on the
               remote only); ferry runs ``pct unlock`` on the source node over the source
               cluster's ``[..ssh]`` (the API has no unlock for containers) and DELETE {purge=1};
               without SSH the source stays, and cleanup says what to run (CleanupPending)
    rollback   a copy carrying the source's MAC addresses is destroyed on the target cluster;
               the source is unlocked and started again if it ran

Upstream: pve-container src/PVE/API2/LXC.pm ``remote_migrate_vm`` (parameters, the synchronous
checks) and src/PVE/LXC/Migrate.pm (map_bridges, final_cleanup); the API viewer lists it under
/nodes/{node}/lxc/{vmid}/remote_migrate, marked EXPERIMENTAL. The token secret in the endpoint
is masked in the journal (client.redact).
"""

from __future__ import annotations

import hashlib
import socket
import ssl

from adapters.base import (
    Check,
    CleanupPending,
    Copy,
    MoveSpec,
    Observation,
    PermanentError,
    RefusedError,
    StepContext,
)
from adapters.proxmox import dump, observe
from adapters.proxmox.backend import ProxmoxBackend
from adapters.proxmox.client import Api, ApiFailure
from adapters.proxmox.guestops import MoveContext, ensure_power, wait_unlocked
from adapters.proxmox.settings import ProxmoxSettings

#: Config keys that differ between a container and its copy by construction.
_NOT_COMPARED = frozenset({"digest", "lock", "rootfs"})


def fingerprint(settings: ProxmoxSettings, host: str) -> str:
    """The SHA-256 fingerprint of the API certificate at ``host``: the configured one, else the
    one ferry's own connection verifies against the cluster's CA (never an unverified one)."""
    if settings.fingerprint:
        return settings.fingerprint
    if not settings.verify_ssl:
        raise PermanentError("a move onto this cluster by remote_migrate needs its API certificate's fingerprint: "
                             "set fingerprint (or verify_ssl = true with ca_file) in its table")
    context = ssl.create_default_context(cafile=settings.ca_file)
    try:
        with socket.create_connection((host, settings.port), timeout=settings.timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise PermanentError(f"cannot read the API certificate of {host}:{settings.port}: {exc}") from None
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def idmap(pairs: dict[str, str]) -> str:
    """A ``pve-targetstorage`` / ``bridge-pair-list`` value: ``src:dst`` pairs, else "1" (itself)."""
    return ",".join(f"{src}:{dst}" for src, dst in sorted(pairs.items())) or "1"


def mapped_nets(conf: dict, bridge_map: dict[str, str]) -> dict[str, str]:
    """The ``net*`` values with each bridge mapped (LXC/Migrate.pm map_bridges)."""
    out = {}
    for key, value in conf.items():
        if key.startswith("net") and key[3:].isdigit():
            props = observe.parse_property_string(str(value))
            if "bridge" in props:
                props["bridge"] = bridge_map.get(props["bridge"], props["bridge"])
            out[key] = observe.render_property_string(props)
    return out


def _macs(conf: dict) -> set[str]:
    return {observe.parse_property_string(str(v)).get("hwaddr", "").upper() for k, v in conf.items()
            if k.startswith("net") and k[3:].isdigit()} - {""}


class ClusterToCluster:
    """The steps of one move between two Proxmox clusters (module doc)."""

    def __init__(self, source: ProxmoxBackend, target: ProxmoxBackend, names: tuple[str, str]) -> None:
        self.a, self.b, self.names = source, target, names
        self.memo: dict[str, bool] = {}

    # ------------------------------------------------------------------ helpers
    def _mcs(self, spec: MoveSpec, ctx: StepContext) -> tuple[MoveContext, MoveContext]:
        return (MoveContext(Api(self.a.client, ctx.journal), self.a.settings, spec, ctx, self.memo),
                MoveContext(Api(self.b.client, ctx.journal), self.b.settings, spec, ctx, self.memo))

    @staticmethod
    def dest(spec: MoveSpec) -> int:
        return int(spec.target_ct or spec.ct)

    def _shared_backups(self, spec: MoveSpec, mb: MoveContext) -> Check:
        """The dump path's archive must be readable in both clusters: one storage, one id."""
        ours = self.a.settings.backup_storage
        rows = [r for r in mb.api.get("/cluster/resources", type="storage")
                if r.get("storage") == ours and r.get("node") == spec.target and "backup" in str(r.get("content"))]
        return Check("backup storage in both clusters", bool(ours) and bool(rows) and ours == mb.settings.backup_storage,
                     f"give clusters {self.names[0]} and {self.names[1]} one shared backup storage under one id "
                     f"(mixed.clusters.<name>.backup_storage; now {ours!r} and {mb.settings.backup_storage!r})")

    def _storage_pair(self, spec: MoveSpec, conf: dict) -> tuple[str, str]:
        src = observe.rootfs_storage(conf) or "local"
        return src, spec.target_storage or self.b.settings.storage_map.get(src, src)

    def _copy(self, spec: MoveSpec, api: Api) -> observe.Placement | None:
        return observe.locate(api, self.dest(spec))

    @staticmethod
    def _is_copy(ma: MoveContext, mb: MoveContext, source: observe.Placement,
                 copy: observe.Placement | None) -> bool:
        """Whether ``copy`` is this CT's copy: it carries the source's MAC addresses (both paths
        keep them), so a stranger under the same VMID is never taken for it."""
        if copy is None:
            return False
        theirs = _macs(observe.config(ma.api, source.node, source.vmid))
        return bool(theirs) and theirs == _macs(observe.config(mb.api, copy.node, copy.vmid))

    def endpoint(self, node: str) -> str:
        s = self.b.settings
        host = s.node_hosts.get(node, s.host)
        return (f"apitoken=PVEAPIToken={s.token_id}={s.token_secret},host={host},port={s.port},"
                f"fingerprint={fingerprint(s, host)}")

    # ------------------------------------------------------------------ steps
    def observe(self, spec: MoveSpec) -> Observation:
        a, b = Api(self.a.client, self.a.journal), Api(self.b.client, self.b.journal)
        source, copy = observe.locate(a, int(spec.ct)), self._copy(spec, b)
        src = Copy(spec.source, spec.ct, "absent") if source is None else Copy(source.node, spec.ct, source.status)
        dst = Copy(spec.target, spec.dest_ct, "absent") if copy is None else Copy(
            copy.node, str(copy.vmid), "partial" if copy.lock else copy.status)
        return Observation(source=src, target=dst)  # type: ignore[arg-type]

    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        if spec.method == "live":
            raise RefusedError("LXC has no live migration; a container changes cluster stopped (restart mode)")
        ma, mb = self._mcs(spec, ctx)
        place = observe.locate(ma.api, ma.vmid)
        checks = [Check("container exists", place is not None and place.node == spec.source,
                        f"CT {spec.ct} is {'on ' + place.node if place else 'not'} in cluster {self.names[0]}")]
        if place is None:
            return checks
        ma.saw_source(place.status == "running")
        checks.append(Check("not HA-managed", f"ct:{spec.ct}" not in observe.ha_sids(ma.api),
                            "Proxmox does not move an HA resource to another cluster; remove it from HA first"))
        nodes = {r["node"]: r for r in mb.api.get("/cluster/resources", type="node")}
        state = nodes.get(spec.target, {}).get("status", f"not in cluster {self.names[1]}")
        checks.append(Check("target node online", state == "online", f"{spec.target} is {state}"))
        try:
            mb.api.get("/cluster/nextid", vmid=self.dest(spec))
            free = True
        except ApiFailure:  # taken: by this move's own copy (a resumed move), or by a stranger
            free = self._is_copy(ma, mb, place, self._copy(spec, mb.api))
        checks.append(Check("target VMID free", free, f"VMID {self.dest(spec)} is taken in cluster {self.names[1]}"))
        if spec.method == "dump":
            checks.append(self._shared_backups(spec, mb))
        elif all(c.ok for c in checks):
            self._check_landing(spec, mb)
        return checks

    def _check_landing(self, spec: MoveSpec, mb: MoveContext) -> None:
        """remote_migrate lands on the node answering its endpoint: refuse (-> dump) unless that
        is the move's target."""
        if spec.target in self.b.settings.node_hosts:
            return
        local = [e["name"] for e in mb.api.get("/cluster/status") if e.get("type") == "node" and e.get("local")]
        if local != [spec.target]:
            raise RefusedError(f"remote_migrate lands on {local[0] if local else 'the node answering'} "
                               f"({self.b.settings.host}), not {spec.target}: set "
                               f"mixed.clusters.{self.names[1]}.node_hosts.{spec.target}")

    def prepare(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Nothing to reserve: the copy is found by its VMID on the target cluster."""
        observe.locate(Api(self.a.client, ctx.journal), int(spec.ct))

    def presync(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Nothing to copy ahead: both paths copy the stopped container."""

    def cutover(self, spec: MoveSpec, ctx: StepContext) -> None:
        ma, mb = self._mcs(spec, ctx)
        copy = self._copy(spec, mb.api)
        if copy is None:
            source = observe.locate(ma.api, ma.vmid)
            if source is None:
                raise PermanentError(f"CT {spec.ct} is gone from cluster {self.names[0]} and has no copy")
            self.memo.setdefault(f"running:{spec.ct}", source.status == "running")
            conf = observe.config(ma.api, source.node, ma.vmid)
            if spec.method == "dump":
                self._dump_restore(ma, mb, source, conf)
            else:
                self._remote_migrate(ma, source, conf)
            copy = self._copy(spec, mb.api)
            if copy is None or copy.node != spec.target:
                raise PermanentError(f"CT {spec.ct} did not arrive on {spec.target} in cluster {self.names[1]}")
        wait_unlocked(mb, copy.node, copy.vmid)
        if mb.source_ran(unknown=True):
            ensure_power(mb, copy.node, copy.vmid, "running")

    def _remote_migrate(self, ma: MoveContext, source: observe.Placement, conf: dict) -> None:
        spec = ma.spec
        running = observe.active_task(ma.api, ma.vmid, ("vzmigrate",))
        if running is None:
            try:
                running = ma.api.post(
                    f"/nodes/{source.node}/lxc/{ma.vmid}/remote_migrate", **{
                        "target-endpoint": self.endpoint(spec.target),
                        "target-storage": idmap(dict([self._storage_pair(spec, conf)])),
                        "target-bridge": idmap(dict(self.b.settings.bridge_map)),
                        "target-vmid": self.dest(spec), "restart": 1 if source.status == "running" else None,
                        "timeout": ma.settings.shutdown_timeout_s, "delete": 0, "bwlimit": ma.bwlimit_kib})
            except ApiFailure as exc:
                if exc.status == 501 or (exc.status == 400 and "not defined in schema" in str(exc.errors)):
                    raise RefusedError(f"cluster {self.names[0]} does not offer remote_migrate "
                                       f"(HTTP {exc.status} {exc.message}); moving by dump and restore") from None
                raise
        ma.event("remote_migrate", to_cluster=self.names[1], target=spec.target, vmid=self.dest(spec))
        ma.run(running)

    def _dump_restore(self, ma: MoveContext, mb: MoveContext, source: observe.Placement, conf: dict) -> None:
        spec = ma.spec
        ensure_power(ma, source.node, ma.vmid, "stopped")
        volid = dump._backup(ma, source.node)
        theirs = mb.settings.backup_storage
        listed = {row["volid"] for row in mb.api.get(f"/nodes/{spec.target}/storage/{theirs}/content",
                                                     content="backup", vmid=ma.vmid)} if theirs else set()
        if volid not in listed:
            raise PermanentError(f"archive {volid} is not on cluster {self.names[1]}'s backup storage "
                                 f"({theirs}): give both clusters one shared backup storage "
                                 f"(mixed.clusters.{self.names[1]}.backup_storage)")
        mb.event("restore from another cluster", archive=volid, from_cluster=self.names[0])
        mb.run(mb.api.post(f"/nodes/{spec.target}/lxc", vmid=self.dest(spec), ostemplate=volid, restore=1,
                           storage=self._storage_pair(spec, conf)[1], bwlimit=mb.bwlimit_kib))
        changed = mapped_nets(conf, dict(self.b.settings.bridge_map))
        if any(str(conf.get(k)) != v for k, v in changed.items()):
            mb.api.put(f"/nodes/{spec.target}/lxc/{self.dest(spec)}/config", **changed)

    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        ma, mb = self._mcs(spec, ctx)
        copy, source = self._copy(spec, mb.api), observe.locate(ma.api, ma.vmid)
        known = ma.source_ran(unknown=None)  # None: not known (either will do)
        want = "running or stopped" if known is None else "running" if known else "stopped"
        if copy is None or copy.node != spec.target or copy.status not in want.split(" or ") or copy.lock:
            found = f"{copy.status} on {copy.node} (lock {copy.lock})" if copy else "absent"
            raise PermanentError(f"copy {self.dest(spec)} in cluster {self.names[1]} is {found}, expected {want} "
                                 f"on {spec.target}")
        if source is None:
            raise PermanentError(f"CT {spec.ct} vanished from cluster {self.names[0]} before ferry verified its copy")
        if source.status == "running":
            raise PermanentError(f"CT {spec.ct} runs again in cluster {self.names[0]}; two copies would share addresses")
        theirs, ours = observe.config(ma.api, source.node, ma.vmid), observe.config(mb.api, copy.node, copy.vmid)
        expected = {**{k: v for k, v in theirs.items() if k not in _NOT_COMPARED},
                    **mapped_nets(theirs, dict(self.b.settings.bridge_map))}
        differ = sorted(k for k in set(expected) | set(ours) - _NOT_COMPARED if str(expected.get(k)) != str(ours.get(k)))
        storage = self._storage_pair(spec, theirs)[1]
        if observe.rootfs_storage(ours) != storage:
            differ.append(f"rootfs (storage {observe.rootfs_storage(ours)}, expected {storage})")
        if differ:
            raise PermanentError(f"copy {copy.vmid} differs from CT {spec.ct} in: {', '.join(differ)}")

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Delete the verified move's source (module doc); nothing once it is gone."""
        ma, mb = self._mcs(spec, ctx)
        source = observe.locate(ma.api, ma.vmid)
        if source is None:
            return
        copy = self._copy(spec, mb.api)
        if copy is None or copy.node != spec.target:
            raise PermanentError(f"no copy of CT {spec.ct} on {spec.target}; the source in cluster "
                                 f"{self.names[0]} stays")
        if source.status == "running":
            raise PermanentError(f"CT {spec.ct} runs in cluster {self.names[0]}; not deleting it")
        self._unlock(ma, source)
        ma.run(ma.api.delete(f"/nodes/{source.node}/lxc/{ma.vmid}", purge=1))
        ma.event("deleted source after verify", cluster=self.names[0], node=source.node, copy=copy.vmid)

    def _unlock(self, ma: MoveContext, source: observe.Placement) -> None:
        """Clear the ``migrate`` lock remote_migrate leaves on the source (``pct unlock`` over SSH)."""
        if source.lock != "migrate":
            return
        ssh = self.a.settings.ssh
        if self.a.shell is None or (ssh is not None and source.node not in ssh.nodes):
            raise CleanupPending(f"source CT {ma.vmid} stays stopped and locked (migrate) on {source.node} "
                                 f"in cluster {self.names[0]}: run 'pct unlock {ma.vmid} && pct destroy "
                                 f"{ma.vmid} --purge' there, or add {source.node} to "
                                 f"mixed.clusters.{self.names[0]}.ssh.nodes")
        self.a.shell.run(source.node, ["pct", "unlock", str(ma.vmid)], ma.ctx.journal)

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        ma, mb = self._mcs(spec, ctx)
        source, copy = observe.locate(ma.api, ma.vmid), self._copy(spec, mb.api)
        if source is not None and self._is_copy(ma, mb, source, copy):
            dump.destroy_copy(mb, copy)
        if source is None:
            return
        try:
            self._unlock(ma, source)
        except CleanupPending as exc:
            raise PermanentError(str(exc)) from None
        if ma.source_ran(unknown=True):
            ensure_power(ma, source.node, ma.vmid, "running")
