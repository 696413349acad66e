"""The networks containers live in: which subnets each node (or site) reaches, and which addresses
are free to hand out there (the ``[networks]`` table of ferry's config).

A container whose destination lies outside its subnet cannot keep its address: the plan gives it
a free address of the destination's network (:mod:`planners.addresses`). Example (TOML)::

    [networks]
    fixed_tag = "fixed-ip"          # a container with this tag never leaves its subnet
    fixed = ["101"]                 # ... nor do these containers (a rule, by id)
    ttl_s = 300                     # the address record's TTL when no DNS server is asked
    [networks.subnets.lan-a]
    subnet = "10.0.1.0/24"
    gateway = "10.0.1.1"
    nodes = ["ovz1", "ovz2"]        # the nodes in this network ...
    zones = []                      # ... or every node of these zones (sites)
    pool = ["10.0.1.100-10.0.1.149", "10.0.1.200"]
    allocate_hook = []              # or an IPAM command: + NETWORK CT, prints one free address

Plain data, no I/O: the hook is run by the service (service/addressing.py), never here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from fleet.model import Id, Inventory, Name, Node, NodeName

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Most addresses one pool may list (a /16 of IPv4); larger pools belong to an IPAM hook.
MAX_POOL = 65_536


def _check_range(text: str) -> str:
    _expand(text)
    return text


def _expand(text: str) -> list[IPAddress]:
    """``"10.0.1.100-10.0.1.149"`` or ``"10.0.1.7"`` as addresses, in order."""
    first, _, last = text.partition("-")
    try:
        low, high = ipaddress.ip_address(first.strip()), ipaddress.ip_address((last or first).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an address or a range FIRST-LAST") from None
    if low.version != high.version or int(high) < int(low):
        raise ValueError(f"{text!r} is not a range from a lower to a higher address of one family")
    if int(high) - int(low) >= MAX_POOL:
        raise ValueError(f"{text!r} holds more than {MAX_POOL} addresses: use an allocate_hook")
    return [ipaddress.ip_address(n) for n in range(int(low), int(high) + 1)]


class Network(BaseModel):
    """One subnet: where it is reachable and which of its addresses may be handed out."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    subnet: Annotated[str, AfterValidator(lambda v: str(ipaddress.ip_network(v, strict=False)))]
    gateway: str | None = None
    nodes: list[NodeName] = Field(default_factory=list)
    zones: list[Name] = Field(default_factory=list)
    pool: list[Annotated[str, AfterValidator(_check_range)]] = Field(default_factory=list)
    allocate_hook: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _inside(self) -> Network:
        net = self.network
        for text in self.pool:
            outside = [str(a) for a in _expand(text) if a not in net]
            if outside:
                raise ValueError(f"pool {text!r}: {outside[0]} is outside {self.subnet}")
        if self.gateway is not None and ipaddress.ip_address(self.gateway) not in net:
            raise ValueError(f"gateway {self.gateway} is outside {self.subnet}")
        return self

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.subnet)

    def contains(self, address: str) -> bool:
        """Whether ``address`` (``10.0.1.5`` or ``10.0.1.5/24``) lies in this subnet."""
        try:
            ip = ipaddress.ip_interface(address).ip
        except ValueError:
            return False
        return ip.version == self.network.version and ip in self.network

    def serves(self, node: Node) -> bool:
        return node.name in self.nodes or (node.zone is not None and node.zone in self.zones)

    def free(self, taken: set[str]) -> Iterator[str]:
        """The pool's addresses not in ``taken``, in the order the pool lists them."""
        for text in self.pool:
            for address in _expand(text):
                if str(address) not in taken:
                    yield str(address)


class Networks(BaseModel):
    """Every declared network; empty means ferry never changes an address."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    subnets: dict[Id, Network] = Field(default_factory=dict)
    fixed_tag: Name = "fixed-ip"
    fixed: list[Id] = Field(default_factory=list)
    ttl_s: int = Field(default=300, ge=0, le=7 * 86400)

    def of_node(self, node: Node) -> list[str]:
        """Names of the networks ``node`` is in."""
        return [name for name, net in self.subnets.items() if net.serves(node)]

    def of_address(self, address: str) -> str | None:
        """Name of the declared network holding ``address``, if any."""
        return next((name for name, net in self.subnets.items() if net.contains(address)), None)

    def is_fixed(self, ct_id: str, tags: list[str]) -> bool:
        return ct_id in self.fixed or self.fixed_tag in tags

    def nodes_in(self, inv: Inventory, network: str) -> list[str]:
        return [n.name for n in inv.nodes if self.subnets[network].serves(n)]
