"""The reading half of the OpenVZ backend: what the nodes show of a container and of a move.

    discover: per node  sh NODE_SCRIPT | vzlist -j | CONF_SCRIPT  --inventory parsers--> Inventory
    observe:  vzctl status + /etc/vz/conf/<CT>.conf[.migrated] on both ends --> Observation
    helpers the steps share: one journaled command (_run), a CT's status, config and private
        area, and the per-move record on the source node (``<state_dir>/<CT>/``: markers, files)

Every step of a move (backend.py, teardown.py) and the OpenVZ -> Proxmox path
(adapters/openvz_to_proxmox.py) observes the nodes through these before acting, so the reading is
written once: a status word parsed one way, a config found one way.
"""

from __future__ import annotations

from adapters.base import (
    Backend,
    Copy,
    MoveSpec,
    Observation,
    PermanentError,
    StepContext,
    TransientError,
)
from adapters.openvz import inventory, readdress
from adapters.openvz.restore import OpenVZRestore
from adapters.openvz.settings import OpenVZSettings
from adapters.openvz.ssh import Result, Shell
from fleet.model import Inventory


class ObservingBackend(Backend):
    """The nodes as SSH shows them: the Backend's reads and the helpers its steps observe with."""

    def __init__(self, settings: OpenVZSettings, shell: Shell | None = None,
                 records: readdress.AddressRecords | None = None) -> None:
        self.settings = settings
        self.shell = shell or Shell(settings)
        #: The DNS zone whose address records follow a move that changes the address (the
        #: service attaches it from ``[dns]``); None: only ``dns_hook`` runs.
        self.records = records
        self._restores: OpenVZRestore | None = None

    # ---------------------------------------------------------------- helpers
    def _run(self, node: str, argv: list[str], ctx: StepContext, **kw) -> Result:
        return self.shell.run(node, argv, ctx.journal, **kw)

    def _state(self, spec: MoveSpec) -> str:
        return f"{self.settings.state_dir}/{spec.ct}"

    def _conf(self, node: str, ct: str, ctx: StepContext, suffix: str = "") -> dict[str, str] | None:
        res = self._run(node, ["cat", f"/etc/vz/conf/{ct}.conf{suffix}"], ctx, check=False)
        return inventory.parse_conf(res.out) if res.ok else None

    def _private(self, conf: dict[str, str] | None, ct: str) -> str:
        template = (conf or {}).get("VE_PRIVATE") or "/var/lib/vz/private/$VEID"
        return template.replace("$VEID", ct).replace("${VEID}", ct)

    def _status(self, node: str, ct: str, ctx: StepContext) -> str:
        res = self._run(node, ["vzctl", "status", ct], ctx, check=False)
        return inventory.ct_status(node, ct, res.out, res.status, res.err)

    def _marker(self, spec: MoveSpec, name: str, ctx: StepContext) -> bool:
        path = f"{self._state(spec)}/{name}"
        return self._run(spec.source, ["test", "-e", path], ctx, check=False).ok

    def _read_state(self, spec: MoveSpec, name: str, ctx: StepContext) -> str:
        res = self._run(spec.source, ["cat", f"{self._state(spec)}/{name}"], ctx, check=False)
        return res.out if res.ok else ""

    def _source_conf(self, spec: MoveSpec, ctx: StepContext) -> dict[str, str]:
        conf = self._conf(spec.source, spec.ct, ctx) or self._conf(spec.source, spec.ct, ctx, ".migrated")
        if conf is None:
            raise PermanentError(f"CT {spec.ct} has no config on {spec.source}")
        return conf

    def _new_ips(self, spec: MoveSpec, conf: dict[str, str]) -> list[str]:
        return list(spec.ips or inventory.ips_of(conf))

    # ---------------------------------------------------------------- reading
    def discover(self) -> Inventory:
        nodes, containers = [], []
        ctx = StepContext()
        for name in self.settings.nodes:
            try:
                facts = self._run(name, ["sh", "-c", inventory.NODE_SCRIPT], ctx).out
            except TransientError:  # unreachable: reported offline, its containers unknown
                nodes.append(inventory.unreachable_node(name))
                continue
            nodes.append(inventory.parse_node(name, facts))
            rows = inventory.parse_vzlist_json(self._run(name, inventory.VZLIST_ARGV, ctx).out)
            confs = inventory.split_conf_dump(self._run(name, ["sh", "-c", inventory.CONF_SCRIPT],
                                                        ctx).out)
            containers += [inventory.container_from(name, r, confs.get(str(r["ctid"]), {}))
                           for r in rows]
        return inventory.build_inventory(nodes, containers)

    def observe(self, spec: MoveSpec) -> Observation:
        """Both ends as the nodes show them. A source whose config was renamed ``.migrated`` is
        the stopped copy kept for rollback and retention; a destination that is not running
        while the source still has its live config is a ``partial`` copy (presync, a staged
        config), complete only once the switch renamed the source's config."""
        ctx = StepContext()
        source = self._status(spec.source, spec.ct, ctx)
        conf = self._conf(spec.source, spec.ct, ctx)
        switched = conf is None and (conf := self._conf(spec.source, spec.ct, ctx, ".migrated")) is not None
        if source == "absent" and switched:
            source = "stopped"
        target = self._status(spec.target, spec.dest_ct, ctx)
        target_conf = self._conf(spec.target, spec.dest_ct, ctx)
        if target != "running" and not switched and (target_conf is not None or self._run(
                spec.target, ["test", "-d", self._private(None, spec.dest_ct)], ctx, check=False).ok):
            target = "partial"
        owner = self._read_state(spec, "owner", ctx).strip() or None
        return Observation(
            source=Copy(spec.source, spec.ct, source, inventory.serving_ips(source, conf), locked_by=owner),
            target=Copy(spec.target, spec.dest_ct, target, inventory.serving_ips(target, target_conf),
                        locked_by=owner))
