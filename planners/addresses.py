"""Address plans: a container moved out of its subnet gets a free address of its destination's.

    inventory --fence: fixed-address containers pinned to their subnet's nodes--> planner
        --> plan --assign: each crossing move takes the next free pool (or hook) address-->
            every pool held? yes -> plan with ``address`` on each crossing move
                             no  -> ban the overflowing (container, node) pairs, plan again
                                    (at most REPLAN_ROUNDS); what still overflows stays put,
                                    unplaced with the pool as the binding constraint

A move that changes address is never ``live``: a live move keeps the container's identity on the
wire (OpenVZ ``vzmigrate --live`` and a Proxmox migration refuse new addresses), so the move
takes its platform's readdressing path (:data:`READDRESS_METHOD`), re-priced with the cost model
(planners/costs.py) so its predicted duration and downtime say what it really costs: OpenVZ
``restart`` (pre-copy, forwarders hold clients on the old address, stop, final copy, start with
the new address); Proxmox ``dump`` (backup, restore with ``net0`` rewritten, start).

Pools are capacity, like memory: no address is handed out twice, neither within a plan nor
across jobs (``taken`` holds the addresses containers use and those other active jobs hold, from
the job store). Pure: an IPAM hook reaches here only as the ``allocate`` callable, and the TTL
clients keep the old address for (``old_address_s``) comes from the caller.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fleet.model import Container, Inventory, Rules
from fleet.networks import Networks
from fleet.plan import Method, Move, Plan, Predicted, Readdress, Unplaced
from fleet.policy import Policy
from fleet.snapshot import inventory_digest
from planners.costs import plan_sharing, predict

#: ``allocate(network, ct)`` -> a free address of ``network`` from an IPAM hook, or None.
Allocator = Callable[[str, str], str | None]
#: The method of a move that changes address, by the source's platform (module doc); another
#: platform's moves (sim) only leave ``live``, for the next method (service/lifecycle.py FALLBACK).
READDRESS_METHOD: dict[str, Method] = {"openvz": "restart", "proxmox": "dump"}
#: How many times a plan is made again after a pool ran out.
REPLAN_ROUNDS = 3


@dataclass(frozen=True)
class Crossing:
    """A container whose destination lies outside its subnet."""

    ct: Container
    old_ip: str
    old_network: str
    node: str


def primary_address(ct: Container) -> str | None:
    """The address clients use (the first configured), without its prefix length."""
    return str(ipaddress.ip_interface(ct.ips[0]).ip) if ct.ips else None


def fence(inv: Inventory, networks: Networks) -> Inventory:
    """``inv`` with every fixed-address container (``networks.fixed``, ``networks.fixed_tag``)
    allowed only onto nodes of its own subnet (``pin_to``, intersected with any it had)."""
    pins = {ct: list(nodes) for ct, nodes in inv.rules.pin_to.items()}
    for ct in inv.containers:
        net = networks.of_address(primary_address(ct) or "") if ct.ips else None
        if net is None or not networks.is_fixed(ct.id, ct.tags):
            continue
        home = networks.nodes_in(inv, net)
        pins[ct.id] = [n for n in pins.get(ct.id, home) if n in home]
    return _with_pins(inv, pins)


def _with_pins(inv: Inventory, pins: dict[str, list[str]]) -> Inventory:
    rules = Rules.model_validate({**inv.rules.model_dump(), "pin_to": pins})
    return inv.model_copy(update={"rules": rules})


def crossings(plan: Plan, inv: Inventory, networks: Networks) -> list[Crossing]:
    """The plan's moves that leave their container's subnet, in execution order. A container
    with no address in a declared network, or a destination in no declared network, keeps its
    address (ferry knows nothing of the topology there)."""
    out = []
    for move in plan.moves:
        ct = inv.container(move.ct)
        old_ip = primary_address(ct)
        old_net = networks.of_address(old_ip) if old_ip else None
        dest_nets = networks.of_node(inv.node(move.to))
        if old_ip and old_net and dest_nets and old_net not in dest_nets:
            out.append(Crossing(ct, old_ip, old_net, move.to))
    return out


def _new_ips(ct: Container, old_net: str, new_ip: str, networks: Networks, new_net: str,
             cidr: bool = False) -> list[str]:
    """The container's addresses with those of its old subnet replaced by ``new_ip``, written
    with the new subnet's prefix length when the old ones carried one or ``cidr`` asks (a
    Proxmox destination: ``net[n]`` takes an address in CIDR form, and the new subnet's prefix
    length need not be the old one's)."""
    prefix = cidr or "/" in ct.ips[0]
    first = f"{new_ip}/{networks.subnets[new_net].network.prefixlen}" if prefix else new_ip
    return [first] + [ip for ip in ct.ips if not networks.subnets[old_net].contains(ip)]


def assign(plan: Plan, inv: Inventory, networks: Networks, taken: set[str],
           allocate: Allocator | None = None, ttl_s: Mapping[str, int] | None = None,
           policy: Policy | None = None) -> tuple[Plan, dict[str, str]]:
    """Give each crossing move an address; returns the plan and the moves no pool could serve
    ({ct: destination})."""
    used = set(taken)
    given: dict[str, Readdress] = {}
    overflow: dict[str, str] = {}
    for cross in crossings(plan, inv, networks):
        found = _take(networks, networks.of_node(inv.node(cross.node)), cross.ct.id, used, allocate)
        if found is None:
            overflow[cross.ct.id] = cross.node
            continue
        net, ip = found
        given[cross.ct.id] = Readdress(**{
            "from": cross.old_ip, "to": ip, "network": net, "gateway": networks.subnets[net].gateway,
            "ips": _new_ips(cross.ct, cross.old_network, ip, networks, net,
                            cidr=inv.node(cross.node).platform == "proxmox"),
            "old_address_s": networks.ttl_s if ttl_s is None else ttl_s.get(cross.ct.id, networks.ttl_s)})
    for move in plan.moves:
        if move.ct not in given and (bridged := _bridged(move, inv, networks)) is not None:
            given[move.ct] = bridged
    policy = policy or Policy()
    out_of = Counter(m.from_node for m in plan.moves)
    moves = [readdressed(m.model_copy(update={"address": given[m.ct],
                                              "reason": _say(m.reason, given[m.ct])}),
                         inv, policy, sharing=plan_sharing(policy, out_of[m.from_node]))
             if m.ct in given else m for m in plan.moves]
    return plan.model_copy(update={"moves": moves}), overflow


def _disk_copied(inv: Inventory, move: Move) -> bool:
    """Whether the move copies the disk (planners/state.py ``copies_disk``): not when it stays
    on a shared storage both nodes mount under the same id."""
    ct = inv.container(move.ct)
    src_id, dst_id = ct.storage, move.target_storage or ct.storage
    if src_id is None or dst_id is None:
        return False
    src = inv.node(move.from_node).storage.get(src_id)
    dst = inv.node(move.to).storage.get(dst_id)
    return not (src is not None and src.shared and dst is not None and dst.shared
                and src_id == dst_id)


def readdressed(move: Move, inv: Inventory, policy: Policy, *, sharing: int = 1) -> Move:
    """``move`` (which changes address) on its platform's readdressing path, priced again by
    the cost model (module doc) with the plan's ``sharing`` of the source's NIC; a stopped
    container has no downtime to predict."""
    ct, src = inv.container(move.ct), inv.node(move.from_node)
    method = READDRESS_METHOD.get(src.platform, "restart")
    if move.method == method or (move.method != "live" and src.platform != "proxmox"):
        return move
    cost = predict(ct, src, inv.node(move.to), policy, _disk_copied(inv, move), method=method,
                   sharing=sharing)
    downtime = cost.downtime_s if ct.status == "running" else 0.0
    return move.model_copy(update={"method": cost.method, "predicted": Predicted(
        duration_s=cost.duration_s, downtime_s=downtime, bytes=cost.bytes)})
def _bridged(move: Move, inv: Inventory, networks: Networks) -> Readdress | None:
    """An OpenVZ container landing on Proxmox in its own subnet keeps its address, but a bridged
    ``net0`` needs it with the subnet's prefix length and gateway, which venet never had."""
    if (inv.node(move.from_node).platform, inv.node(move.to).platform) != ("openvz", "proxmox"):
        return None
    ct = inv.container(move.ct)
    ip = primary_address(ct)
    net = networks.of_address(ip) if ip else None
    if ip is None or net is None or net not in networks.of_node(inv.node(move.to)):
        return None
    return Readdress(**{"from": ip, "to": ip, "network": net, "gateway": networks.subnets[net].gateway,
                        "ips": _new_ips(ct, net, ip, networks, net, cidr=True), "old_address_s": 0})


def _say(reason: str, new: Readdress) -> str:
    if new.to == new.from_ip:
        return f"{reason}; address {new.ips[0]} via {new.gateway} on a bridge (Proxmox has no venet)"
    return (f"{reason}; new address {new.to} in {new.network} (clients may use {new.from_ip} for "
            f"{new.old_address_s} s more: its TTL)")


def _take(networks: Networks, names: list[str], ct: str, used: set[str],
          allocate: Allocator | None) -> tuple[str, str] | None:
    """The first free address of the first network in ``names`` that has one; marks it used."""
    for name in names:
        net = networks.subnets[name]
        ip = next(net.free(used), None)
        if ip is None and net.allocate_hook and allocate is not None:
            ip = allocate(name, ct)
            ip = ip if ip and net.contains(ip) and ip not in used else None
        if ip is not None:
            used.add(ip)
            return name, ip
    return None


def plan_with_addresses(make_plan: Callable[[Inventory], Plan], inv: Inventory, networks: Networks,
                        taken: set[str], allocate: Allocator | None = None,
                        ttl_s: Mapping[str, int] | None = None, policy: Policy | None = None,
                        ) -> Plan:
    """Plan with ``make_plan`` so that fixed addresses stay in their subnet and no pool is
    overdrawn (module doc). Without declared networks this is ``make_plan(inv)``.

    An overflowing (container, node) pair is banned and the plan made again; after
    REPLAN_ROUNDS a node whose pool ran out is closed to every container of another subnet but
    those the last plan gave one of its addresses, so each further round closes one more node
    (bounded by the node count). What ends unplaced for want of an address says so. ``policy``
    prices the moves that change address (the one ``make_plan`` plans with)."""
    if not networks.subnets:
        return make_plan(inv)
    fenced = fence(inv, networks)
    banned: dict[str, set[str]] = {}
    for round_ in range(REPLAN_ROUNDS + len(inv.nodes) + 1):
        plan, overflow = assign(make_plan(fenced), inv, networks, taken, allocate, ttl_s, policy)
        if not overflow:
            return _finish(plan, inv, networks, banned)
        for ct, node in overflow.items():
            banned.setdefault(ct, set()).add(node)
        if round_ >= REPLAN_ROUNDS:
            _close(plan, inv, networks, set(overflow.values()), banned)
        fenced = _with_pins(fenced, _banned_pins(fenced, banned))
    raise AssertionError("address planning did not settle")  # unreachable: every round closes a node


def _close(plan: Plan, inv: Inventory, networks: Networks, nodes: set[str],
           banned: dict[str, set[str]]) -> None:
    """Ban ``nodes`` for every container of another subnet the plan gave none of their addresses."""
    granted = {m.ct for m in plan.moves if m.address and m.to in nodes}
    for ct in inv.containers:
        net = networks.of_address(primary_address(ct) or "") if ct.ips else None
        if net is None or ct.id in granted:
            continue
        for node in nodes:
            if net not in networks.of_node(inv.node(node)):
                banned.setdefault(ct.id, set()).add(node)


def _banned_pins(fenced: Inventory, banned: dict[str, set[str]]) -> dict[str, list[str]]:
    all_nodes = [n.name for n in fenced.nodes]
    pins = {ct: list(nodes) for ct, nodes in fenced.rules.pin_to.items()}
    for ct, nodes in banned.items():
        pins[ct] = [n for n in pins.get(ct, all_nodes) if n not in nodes]
    return pins


def _finish(plan: Plan, inv: Inventory, networks: Networks, banned: dict[str, set[str]]) -> Plan:
    """The plan named after the caller's inventory; unplaced containers that were kept off a
    node for want of an address say so."""
    def why(ct: str, reason: str) -> str:
        nodes = sorted(banned.get(ct, ()))
        if not nodes:
            return reason
        nets = sorted({n for node in nodes for n in networks.of_node(inv.node(node))})
        return (f"no free address for it on {', '.join(nodes)} (networks {', '.join(nets)}: every "
                f"pool address is taken); {reason}")

    unplaced = [Unplaced(ct=u.ct, reason=why(u.ct, u.reason)) for u in plan.unplaced]
    return plan.model_copy(update={"unplaced": unplaced, "inventory_digest": inventory_digest(inv)})
