"""Several clusters as one fleet: OpenVZ nodes over SSH and Proxmox VE clusters, inventoried
together, each move run by the path between its two nodes' clusters.

    [ferry] backend = "mixed"
    [mixed.clusters.ovz]  platform = "openvz",  + the keys of an [openvz] table
    [mixed.clusters.pve]  platform = "proxmox", + the keys of a [proxmox] table (with [..ssh])

    discover: every cluster's inventory, merged (node and container names must not repeat)
    a move:   both nodes in one cluster --> that cluster's backend
              an OpenVZ node -> a Proxmox node --> openvz_to_proxmox.OpenVZToProxmox (dump path)
              two Proxmox clusters --> proxmox/remote.ClusterToCluster (remote_migrate, else
                                       vzdump -> shared backup storage -> restore)
              any other pair --> refused by name (no path: Proxmox -> OpenVZ)
    nodes:    each carries the tag ``cluster:<name>`` of its [mixed.clusters] table, so a plan
              made from the inventory names the clusters a move crosses (fleet/crossings.py)

The planner's platform filter lets a container cross platforms only where :func:`crossing`
names a path, so plans and execution agree. Bad configuration is one InputError naming the key
(``mixed.clusters.pve.port``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any

from adapters.base import Backend, MoveSpec, PermanentError, RefusedError, StepContext
from fleet.crossings import CLUSTER_TAG
from fleet.errors import InputError
from fleet.model import Inventory

#: (source platform, target platform) pairs a move can cross, and the method it runs by.
CROSSINGS: dict[tuple[str, str], str] = {("openvz", "proxmox"): "dump"}
#: What the OpenVZ -> Proxmox path cannot honour.
_CROSSING_REFUSES = {"ports": "an OpenVZ -> Proxmox move stops the source before the copy "
                              "exists: there is nothing to hold clients on",
                     "backup": "an OpenVZ -> Proxmox move makes its own archive",
                     "hostname": "an OpenVZ -> Proxmox move keeps the hostname"}
#: What a move between two Proxmox clusters cannot honour: the copy keeps the source's config.
_CLUSTER_REFUSES = {"ports": "a move between clusters stops the source; nothing holds clients",
                    "backup": "a move between clusters makes its own copy",
                    "hostname": "a move between clusters keeps the hostname",
                    "ips": "a move between clusters keeps the addresses",
                    "gateway": "a move between clusters keeps the gateway"}


def crossing(source_platform: str, target_platform: str) -> str | None:
    """The method a move from one platform to another runs by; None when there is no path."""
    if source_platform == target_platform:
        return "same"
    return CROSSINGS.get((source_platform, target_platform))


def by_path(*steps: str) -> Callable[[type], type]:
    """A class decorator: each of ``steps`` runs on ``self._actor(spec)``, the object of the path
    the move's clusters take (the cluster's own backend, or the crossing's path)."""
    def delegate(step: str) -> Callable[..., Any]:
        def run(self: Any, spec: MoveSpec, *ctx: StepContext) -> Any:
            return getattr(self._actor(spec), step)(spec, *ctx)
        run.__name__ = run.__qualname__ = step
        run.__doc__ = f"``{step}`` on the path between the move's two clusters."
        return run

    def decorate(cls: type) -> type:
        for step in steps:
            setattr(cls, step, delegate(step))
        return abc.update_abstractmethods(cls)
    return decorate


@by_path("observe", "preflight", "prepare", "presync", "cutover", "verify", "cleanup", "rollback")
class MixedBackend(Backend):
    """The clusters of one config (module doc); ``members`` by cluster name."""

    name = "mixed"

    def __init__(self, members: Mapping[str, Backend]) -> None:
        self.members = dict(members)
        self._home: dict[str, str] = {}
        #: The path object of each (source cluster, target cluster) pair: kept, so what a path
        #: remembers between steps (was the CT running) lasts the move.
        self._paths: dict[tuple[str, str], Any] = {}
        self._restores: Any = None

    @property
    def records(self) -> Any:
        return next((m.records for m in self.members.values() if getattr(m, "records", None)), None)

    @records.setter
    def records(self, value: Any) -> None:  # the service attaches [dns] (service/dns.py)
        for member in self.members.values():
            if hasattr(member, "records"):
                member.records = value

    def discover(self) -> Inventory:
        parts = {name: member.discover() for name, member in self.members.items()}
        nodes, cts, seen = [], [], {}
        for name, inv in parts.items():
            for node in inv.nodes:
                if node.name in seen:
                    raise PermanentError(f"node {node.name} is in clusters {seen[node.name]} and {name}; "
                                         f"node names must be unique across [mixed.clusters]")
                seen[node.name] = name
                tags = [t for t in node.tags if not t.startswith(CLUSTER_TAG)] + [f"{CLUSTER_TAG}{name}"]
                nodes.append(node.model_copy(update={"tags": tags}))
            cts.extend(inv.containers)
        ids = [ct.id for ct in cts]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise PermanentError(f"container ids {', '.join(twice)} exist in more than one cluster; "
                                 f"renumber them before planning them together")
        self._home = seen
        return Inventory.model_validate({"nodes": [n.model_dump() for n in nodes],
                                         "containers": [c.model_dump() for c in cts]})

    def _cluster(self, node: str) -> str:
        if node not in self._home:
            self.discover()
        if node not in self._home:
            raise PermanentError(f"node {node} is in none of the clusters of [mixed.clusters]")
        return self._home[node]

    def _actor(self, spec: MoveSpec) -> Any:
        src, dst = self._cluster(spec.source), self._cluster(spec.target)
        if src == dst:
            return self.members[src]
        if (src, dst) not in self._paths:
            self._paths[(src, dst)] = self._path(src, dst)
        return self._paths[(src, dst)]

    def _path(self, src: str, dst: str) -> Any:
        kinds = (self.members[src].name, self.members[dst].name)
        if kinds == ("openvz", "proxmox"):
            from adapters.openvz_to_proxmox import OpenVZToProxmox

            return OpenVZToProxmox(self.members[src], self.members[dst])  # type: ignore[arg-type]
        if kinds == ("proxmox", "proxmox"):
            from adapters.proxmox.remote import ClusterToCluster

            return ClusterToCluster(self.members[src], self.members[dst], (src, dst))  # type: ignore[arg-type]
        raise RefusedError(f"no path from {kinds[0]} cluster {src} to {kinds[1]} cluster {dst}")

    def refusals(self, spec: MoveSpec) -> dict[str, str]:
        src, dst = self._cluster(spec.source), self._cluster(spec.target)
        if src == dst:
            return self.members[src].refusals(spec)
        same = self.members[src].name == self.members[dst].name
        return {k: v for k, v in (_CLUSTER_REFUSES if same else _CROSSING_REFUSES).items() if k in spec.requested()}

    def restores(self) -> Any:
        """Restores from backups onto whichever cluster the plan chose (adapters/mixed_restore.py)."""
        if self._restores is None:
            from adapters.mixed_restore import MixedRestore

            self._restores = MixedRestore(self)
        return self._restores

    def close(self) -> None:
        for member in self.members.values():
            member.close()


def create_backend(settings: Mapping[str, Any]) -> Backend:
    """Build every cluster of the ``[mixed]`` table; a bad value is one InputError naming it."""
    clusters = settings.get("clusters") if isinstance(settings, Mapping) else None
    if not isinstance(clusters, Mapping) or not clusters:
        raise InputError("mixed.clusters", clusters, "must name at least one cluster table")
    members: dict[str, Backend] = {}
    for name, table in clusters.items():
        if not isinstance(table, Mapping):
            raise InputError(f"mixed.clusters.{name}", table, "must be a table")
        platform = table.get("platform")
        if platform not in ("openvz", "proxmox"):
            raise InputError(f"mixed.clusters.{name}.platform", platform, "must be openvz or proxmox")
        rest = {k: v for k, v in table.items() if k != "platform"}
        try:
            if platform == "openvz":
                from adapters.openvz import create_backend as make
            else:
                from adapters.proxmox import create_backend as make
            members[name] = make(rest)
        except InputError as exc:
            key = exc.key.split(".", 1)[1] if "." in exc.key else exc.key
            raise InputError(f"mixed.clusters.{name}.{key}", exc.value, exc.why) from None
    return MixedBackend(members)
