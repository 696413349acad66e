"""Address plans on the service side: what is taken, the IPAM hook, and the store's allocations.

    [networks] config --+
    inventory addresses + addresses active jobs hold (address_allocations) --> taken
    allocate_hook (run here, journaled nowhere: planning touches no container) --> allocate
    [dns] server (live plans): the records' TTLs --> each new address's ``old_address_s``
        --> planners.addresses.plan_with_addresses(make_plan, ...) --> Plan with ``address`` moves
    create_job --record_allocations--> address_allocations (refused if an active job holds one)

Job creation is serialised (service/jobs.py), so of two plans handing out one address the second
job is refused, naming the job that holds it; the planner already skips addresses held, so this
happens only to a plan made before the other job existed.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet.model import Inventory
from fleet.networks import Networks
from fleet.plan import Plan
from planners.addresses import Allocator, plan_with_addresses
from service.dns import Rfc2136Records, records_from
from service.lifecycle import JOB_ACTIVE
from service.store import AddressRow, JobRow

if TYPE_CHECKING:
    from service.runtime import Runtime

#: Longest an IPAM hook may take to name an address.
HOOK_TIMEOUT_S = 30.0


def held_addresses(session: Session) -> dict[str, int]:
    """Address -> id of the active job that hands it out."""
    rows = session.execute(select(AddressRow.address, AddressRow.job_id).join(
        JobRow, JobRow.id == AddressRow.job_id).where(JobRow.state.in_(JOB_ACTIVE)))
    return {address: job_id for address, job_id in rows}


def taken_addresses(sessions: sessionmaker[Session], inv: Inventory) -> set[str]:
    """Every address a plan may not hand out: those containers have, those active jobs hold."""
    used = {str(ipaddress.ip_interface(ip).ip) for ct in inv.containers for ip in ct.ips}
    with sessions() as session:
        return used | set(held_addresses(session))


def hook_allocator(networks: Networks) -> Allocator:
    """Run a network's ``allocate_hook`` + NETWORK CT; its first output line is the address (a
    failing or silent hook allocates nothing: the planner then treats the pool as empty)."""
    def allocate(network: str, ct: str) -> str | None:
        argv = [*networks.subnets[network].allocate_hook, network, ct]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=HOOK_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return None
        lines = done.stdout.split()
        return lines[0] if done.returncode == 0 and lines else None
    return allocate


class RecordTTLs(Mapping[str, int]):
    """Container id -> its address record's TTL on the DNS server, asked only for the containers
    a plan moves out of their subnet (a container without a record is absent)."""

    def __init__(self, inv: Inventory, records: Rfc2136Records) -> None:
        self.inv, self.records, self.known = inv, records, dict[str, int | None]()

    def __getitem__(self, ct: str) -> int:
        if ct not in self.known:
            name = self.records.name_of(ct, self.inv.container(ct).name)
            found = self.records.read(name) if name else None
            self.known[ct] = found[0] if found else None
        ttl = self.known[ct]
        if ttl is None:
            raise KeyError(ct)
        return ttl

    def __iter__(self) -> Iterator[str]:
        return iter(ct for ct, ttl in self.known.items() if ttl is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def address_plan(make_plan: Callable[[Inventory], Plan], inv: Inventory, rt: Runtime, *,
                 offline: bool) -> Plan:
    """``make_plan(inv)`` with addresses planned (planners/addresses.py). Live plans skip the
    addresses active jobs hold and predict from the DNS server's TTLs; offline plans (a
    snapshot) see only the snapshot's addresses and the configured TTL, so the same snapshot
    always gives the same plan."""
    networks = rt.config.networks
    if not networks.subnets:
        return make_plan(inv)
    if offline:  # the policy offline plans use (service/operations/planning.py)
        taken = {str(ipaddress.ip_interface(ip).ip) for ct in inv.containers for ip in ct.ips}
        return plan_with_addresses(make_plan, inv, networks, taken, hook_allocator(networks),
                                   policy=rt.config.policy)
    base = rt.config.path.parent if rt.config.path else Path.cwd()
    records = records_from(rt.config.dns, base)
    return plan_with_addresses(make_plan, inv, networks, taken_addresses(rt.sessions, inv),
                               hook_allocator(networks),
                               RecordTTLs(inv, records) if records is not None else None,
                               policy=rt.policy())


def record_allocations(session: Session, job_id: int, plan: Plan) -> None:
    """Store the plan's new addresses under ``job_id``; JobConflict if an active job holds one."""
    from service.jobs import JobConflict

    held = held_addresses(session)
    for move in plan.moves:
        if move.address is None:
            continue
        if move.address.to in held:
            raise JobConflict("address", move.address.to, f"is handed out by job "
                              f"{held[move.address.to]}; plan again")
        session.add(AddressRow(job_id=job_id, address=move.address.to, ct=move.ct,
                               network=move.address.network))
