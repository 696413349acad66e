"""ProxmoxBackend: the Backend interface over the REST API; picks the move path per method.

    spec.method "live" | "restart" --> migrate.py (restart-mode migration, replication presync, HA)
    spec.method "dump"             --> dump.py    (vzdump -> restore -> net -> start; keep source)

Each step builds a MoveContext (the API bound to the step's journal) and calls the path's
function of the same name. Nothing a step needs is kept only in memory: whether the CT ran before
the move is seen by preflight and stored by the engine with the move (``StepContext.facts``), and
comes back as ``spec.source_running`` after a restart; ``memo`` only repeats it within a process.
"""

from __future__ import annotations

import time
from typing import Any

from adapters.base import (
    Backend,
    Check,
    CleanupPending,
    Copy,
    Journal,
    JournalEntry,
    MoveSpec,
    Observation,
    StepContext,
)
from adapters.openvz.ssh import Shell
from adapters.proxmox import dump, inventory, migrate, observe
from adapters.proxmox.client import Api, ProxmoxClient
from adapters.proxmox.guestops import MoveContext
from adapters.proxmox.readdress import OldNodeForwarding
from adapters.proxmox.settings import ProxmoxSettings
from fleet.model import Inventory


def _ignore(entry: JournalEntry) -> None:
    return None


_MIGRATION_KEEPS = ("a Proxmox migration keeps the VMID, addresses and hostname; the dump path "
                    "(backup and restore) can change them")


class ProxmoxBackend(Backend):
    """Moves over the Proxmox API. The bandwidth cap becomes the API's ``bwlimit`` (guestops.py);
    ``target_storage`` the migration's ``target-storage`` or the restore's ``storage``;
    readdressing (``target_ct``, ``ips``, ``gateway``, ``hostname``) needs the dump path, so a
    migration refuses it and the engine falls back to dump; with ``[proxmox.ssh]`` the old node
    forwards the old address while DNS moves (readdress.py), and ``ports`` names what it holds. The lock owner is not written into the
    cluster: Proxmox's config lock, held by every migrate, vzdump and restore task, guards the CT
    there, and the job store's lock keeps two ferry jobs apart."""

    name = "proxmox"
    refuses = {"ports": "Proxmox moves hold no client connections during the switch",
               "backup": "the Proxmox backend does not check for a fresh backup (the dump path "
                         "makes its own)"}

    def refusals(self, spec: MoveSpec) -> dict[str, str]:
        refused = super().refusals(spec)
        if spec.method == "dump" and self.settings.ssh is not None:
            refused.pop("ports", None)  # the old node's forwarders hold them (readdress.py)
        if spec.method != "dump":
            refused.update(dict.fromkeys(set(spec.requested()) & {"target_ct", "ips", "gateway", "hostname"},
                                         _MIGRATION_KEEPS))
        return refused

    def __init__(self, settings: ProxmoxSettings, *, journal: Journal = _ignore) -> None:
        self.settings = settings
        self.client = ProxmoxClient(settings)
        #: Journal for calls made outside a step (discover, observe).
        self.journal = journal
        self._memo: dict[str, bool] = {}
        #: The DNS zone whose records follow a move that changes address (the service attaches
        #: it from ``[dns]``); used only with ``[proxmox.ssh]`` (readdress.py).
        self.records = None
        self.shell = Shell(settings.ssh) if settings.ssh is not None else None

    @property
    def forwarding(self) -> OldNodeForwarding:
        return OldNodeForwarding(self.shell, self.records)

    def _mc(self, spec: MoveSpec, ctx: StepContext) -> MoveContext:
        return MoveContext(Api(self.client, ctx.journal), self.settings, spec, ctx, self._memo)

    @staticmethod
    def _path(spec: MoveSpec) -> Any:
        return dump if spec.method == "dump" else migrate

    def discover(self) -> Inventory:
        return inventory.discover(Api(self.client, self.journal))

    def observe(self, spec: MoveSpec) -> Observation:
        """The source CT and its copy as the cluster lists them. A migration moves one config,
        so the CT is either the source or the target; while its ``migrate`` lock is held on the
        source, the target holds a partial copy. A restore's copy carries the marker tag and is
        partial while its ``create`` lock is held."""
        api = Api(self.client, self.journal)
        cts = observe.guests(api)
        place = cts.get(int(spec.ct))
        if spec.method == "dump":
            copy = next((p for p in cts.values() if dump.marker(spec.ct) in p.tags), None)
            target = self._copy(api, copy, spec.target, spec.dest_ct)
        elif place is not None and place.node == spec.target:
            place, target = None, self._copy(api, place, spec.target, spec.dest_ct)
        else:
            migrating = place is not None and place.lock == "migrate"
            target = Copy(spec.target, spec.dest_ct, "partial" if migrating else "absent")
        return Observation(source=self._copy(api, place, spec.source, spec.ct), target=target)

    @staticmethod
    def _copy(api: Api, place: observe.Placement | None, node: str, ct: str) -> Copy:
        if place is None:
            return Copy(node=node, ct=ct, status="absent")
        status = place.status if place.status in ("running", "stopped") else "unknown"
        if place.lock == "create":
            status = "partial"
        ips = tuple(observe.config_ips(observe.config(api, place.node, place.vmid))) if status == "running" else ()
        return Copy(node=place.node, ct=str(place.vmid), status=status, ips=ips, locked_by=place.lock)

    def preflight(self, spec: MoveSpec, ctx: StepContext) -> list[Check]:
        return self._path(spec).preflight(self._mc(spec, ctx))

    def prepare(self, spec: MoveSpec, ctx: StepContext) -> None:
        """Nothing to reserve: a migration moves the config atomically, a restore takes its VMID
        at cutover (found again by its marker tag). Observing here keeps the step honest."""
        observe.locate(Api(self.client, ctx.journal), int(spec.ct))
        self.forwarding.prepare(self._mc(spec, ctx))

    def presync(self, spec: MoveSpec, ctx: StepContext) -> None:
        if spec.method != "dump":
            migrate.presync(self._mc(spec, ctx))

    def cutover(self, spec: MoveSpec, ctx: StepContext) -> None:
        started = time.monotonic()
        mc = self._mc(spec, ctx)
        self.forwarding.stop_and_forward(mc)
        self._path(spec).cutover(mc)
        self.forwarding.switched(mc)
        ctx.figures["cutover_s"] = time.monotonic() - started

    def verify(self, spec: MoveSpec, ctx: StepContext) -> None:
        self._path(spec).verify(self._mc(spec, ctx))

    def cleanup(self, spec: MoveSpec, ctx: StepContext) -> None:
        forwarders = self.forwarding.cleanup(self._mc(spec, ctx))
        try:
            self._path(spec).cleanup(self._mc(spec, ctx))
        except CleanupPending as pending:
            raise CleanupPending("; ".join(filter(None, [forwarders, str(pending)]))) from None
        if forwarders:
            raise CleanupPending(forwarders)
        if spec.method != "dump":
            self._memo.pop(f"running:{spec.ct}", None)

    def rollback(self, spec: MoveSpec, ctx: StepContext) -> None:
        self.forwarding.rollback(self._mc(spec, ctx))
        self._path(spec).rollback(self._mc(spec, ctx))

    def restores(self) -> Any:
        from adapters.proxmox.backups import ProxmoxRestore  # restores from backups (adapters/restore.py)
        return ProxmoxRestore(self.settings, self.client)

    def purge_expired(self, ctx: StepContext, now: float | None = None) -> list[int]:
        """Destroy retired sources whose retention ended and whose restored copy still runs: a
        sweep for sources no pending move covers any more. A move's own later ``cleanup`` call
        purges its source through the same guarded code (dump._purge_if_due)."""
        api = Api(self.client, ctx.journal)
        return dump.purge_retired(api, self.settings, ctx, time.time() if now is None else now)

    def close(self) -> None:
        if self.shell is not None:
            self.shell.close()
