"""Address plans on the service side: what is taken, the IPAM hook, and the store's allocations.

    [networks] config --+
    inventory addresses + addresses active jobs hold (address_allocations) --> taken
    allocate_hook (run here, journaled nowhere: planning touches no container) --> allocate
        --> planners.addresses.plan_with_addresses(make_plan, ...) --> Plan with ``address`` moves
    create_job --record_allocations--> address_allocations (refused if an active job holds one)

Job creation is serialised (service/jobs.py), so of two plans handing out one address the second
job is refused, naming the job that holds it; the planner already skips addresses held, so this
happens only to a plan made before the other job existed.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet.model import Inventory
from fleet.networks import Networks
from fleet.plan import Plan
from planners.addresses import Allocator, plan_with_addresses
from service.lifecycle import JOB_ACTIVE
from service.store import AddressRow, JobRow

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


def address_plan(make_plan: Callable[[Inventory], Plan], inv: Inventory, networks: Networks,
                 sessions: sessionmaker[Session] | None) -> Plan:
    """``make_plan(inv)`` with addresses planned (planners/addresses.py); offline plans (no
    store) see only the snapshot's addresses as taken."""
    if not networks.subnets:
        return make_plan(inv)
    taken = taken_addresses(sessions, inv) if sessions is not None else {
        str(ipaddress.ip_interface(ip).ip) for ct in inv.containers for ip in ct.ips}
    return plan_with_addresses(make_plan, inv, networks, taken, hook_allocator(networks))


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
