"""A Proxmox move that changes address: ``net0`` rewritten with the new address *and* gateway,
and the old node forwarding the old address to the new one while DNS moves.

    prepare   [proxmox.ssh]: state dir <state_dir>/pve-<VMID> on the old node; the DNS record's
              TTL lowered and waited out (adapters/openvz/readdress.py, the same as OpenVZ)
    cutover   ports the CT serves (MoveSpec.ports, else ``pct exec VMID -- cat /proc/net/tcp``
              and ``/proc/net/udp`` on the old node) -> <state>/ports
              shutdown -> the old address on the old node's bridge (net0 ``bridge=``), announced
              -> forwarders old -> new (adapters/openvz/forwarding.py: DNAT + socat, self-retiring)
              -> the dump path: vzdump, restore, PUT config net0 (:func:`net_changes`), start
              -> the record names the new address; ``dns_done`` (the forwarders may now retire
                 once no client came for ``forward_quiet_s``, at the latest ``forward_seconds``)
    cleanup   forwarders still up: pending (they retire by themselves, even without ferry);
              gone: the record's original TTL back, the state dir removed
    rollback  forwarders stopped, the old address released, the record names the old address

Why SSH to the old node: a Proxmox container's address lives inside the container (a veth on a
bridge), not on the node, so once the source stops nothing answers on the old address, and the
API offers no call that adds an address to a node or runs a forwarder. ferry therefore logs into
the old node (root SSH, which the nodes of a cluster already allow each other) and runs there
the same self-retiring supervisor the OpenVZ path runs. Without ``[proxmox.ssh]`` a move still
gets its new address and gateway, but nothing forwards: clients holding the old address in
their DNS cache fail until its TTL has run out, and no DNS record is moved (the dns_hook or the
operator does it).

``net[n]`` syntax (pve-container src/PVE/LXC/Config.pm ``$netconf_desc``; pct(1) ``--net[n]
name=<string> [,bridge=<bridge>] [,gw=<GatewayIPv4>] [,gw6=<GatewayIPv6>] [,hwaddr=..]
[,ip=<(IPv4/CIDR|dhcp|manual)>] [,ip6=..] [,type=<veth>]``): ``gw`` is the interface's default
gateway for IPv4, ``gw6`` for IPv6; a new subnet needs both the address and the gateway changed,
else the container's default route points at a router it can no longer reach.
"""

from __future__ import annotations

import time

from adapters.base import PermanentError
from adapters.openvz import forwarding
from adapters.openvz import readdress as records_steps
from adapters.openvz.ssh import Shell
from adapters.proxmox import observe
from adapters.proxmox.guestops import MoveContext, ensure_power


def net_changes(conf: dict, ips: tuple[str, ...], gateway: str | None, vmid: int) -> dict[str, str]:
    """``{netN: property string}`` giving ``net{i}`` the address ``ips[i]`` (a bare address
    keeps the interface's prefix length) and ``net0`` the gateway, every other property kept."""
    changes = {}
    for index, address in enumerate(ips):
        key = f"net{index}"
        if key not in conf:
            raise PermanentError(f"copy {vmid} has no {key} for address {address}; give as many "
                                 f"addresses as the CT has interfaces")
        props = observe.parse_property_string(str(conf[key]))
        v6 = ":" in address
        field = "ip6" if v6 else "ip"
        if "/" not in address:
            prefix = props.get(field, "").partition("/")[2]
            if not prefix:
                raise PermanentError(f"{key} of copy {vmid} has no prefix length to keep; give "
                                     f"{address} in CIDR form")
            address = f"{address}/{prefix}"
        props[field] = address
        if index == 0 and gateway:
            props["gw6" if v6 else "gw"] = gateway
        changes[key] = observe.render_property_string(props)
    return changes


def gateway_of(conf: dict) -> str | None:
    """The default gateway ``net0`` names (IPv4 first)."""
    props = observe.parse_property_string(str(conf.get("net0", "")))
    return props.get("gw") or props.get("gw6")


class OldNodeForwarding:
    """The old node's part of a move that changes address (module doc); every method does
    nothing for a move that keeps its address or when no SSH access is configured."""

    def __init__(self, shell: Shell | None, records: records_steps.AddressRecords | None) -> None:
        self.shell = shell
        self.records = records

    def applies(self, mc: MoveContext) -> bool:
        return self.shell is not None and bool(mc.spec.ips) and mc.spec.method == "dump"

    def _state(self, mc: MoveContext) -> str:
        return f"{mc.settings.ssh.state_dir}/pve-{mc.vmid}"

    def _sh(self, mc: MoveContext, script: str, *args: str, check: bool = True) -> str:
        assert self.shell is not None
        return self.shell.run(mc.spec.source, ["sh", "-c", script, "ferry", self._state(mc), *args],
                              mc.ctx.journal, check=check).out

    def prepare(self, mc: MoveContext) -> None:
        """The state dir on the old node; the record's TTL lowered and waited out."""
        if not self.applies(mc):
            return
        self._sh(mc, 'mkdir -p "$1"')
        if self.records is None:
            return
        source = observe.locate(mc.api, mc.vmid)
        conf = observe.config(mc.api, source.node, mc.vmid) if source else {}
        if source is None or mc.spec.ips[0].split("/")[0] in observe.config_ips(conf):
            return
        mc.ctx.figures["dns_wait_s"] = records_steps.lower_ahead(
            self.shell, self.records, mc.spec.source, self._state(mc), mc.spec.ct,
            conf.get("hostname") or None, mc.ctx.journal, mc.ctx.cancelled)

    def stop_and_forward(self, mc: MoveContext) -> None:
        """Record the ports, stop the source, put its address on the old node and forward it to
        the new one. Level-triggered: a resumed cutover redoes only what is missing."""
        if not self.applies(mc):
            return
        source = observe.locate(mc.api, mc.vmid)
        if source is None or source.node != mc.spec.source:
            return
        conf = observe.config(mc.api, source.node, mc.vmid)
        old_ips = observe.config_ips(conf)
        if not old_ips or old_ips[0] == mc.spec.ips[0].split("/")[0]:
            return
        self._sh(mc, 'mkdir -p "$1"')
        if not self._sh(mc, '[ -f "$1/ports" ] && echo yes', check=False).strip():
            running = source.status == "running"
            ports = self._ports(mc, old_ips) if running else []
            udp = self._ports(mc, old_ips, udp=True) if running else []
            self._sh(mc, 'printf "%s\\n" "$3" > "$1/udp_ports"; printf "%s\\n" "$2" > "$1/ports"',
                     " ".join(map(str, ports)), " ".join(map(str, udp)))
        ports = [int(p) for p in self._sh(mc, 'cat "$1/ports"').split()]
        udp = [int(p) for p in self._sh(mc, 'cat "$1/udp_ports" 2>/dev/null; true').split()]
        mc.memo.setdefault(f"running:{mc.vmid}", source.status == "running")
        ensure_power(mc, source.node, mc.vmid, "stopped")
        started = self._sh(mc, '[ -e "$1/forward.pid" ] || [ -e "$1/forward.retired" ] && echo yes',
                           check=False).strip()
        if not (ports or udp) or started:
            return
        bridge = observe.parse_property_string(str(conf.get("net0", ""))).get("bridge", "vmbr0")
        assert self.shell is not None
        via = forwarding.address_of_device(self.shell, mc.spec.source, bridge, mc.ctx.journal)
        if via is None:
            raise PermanentError(f"{bridge} on {mc.spec.source} has no IPv4 address to forward "
                                 f"{old_ips[0]} from")
        ssh = mc.settings.ssh
        # Listeners and DNAT first, then the address: a client reaching the old address on the
        # node is never refused (until then its SYN is lost and resent: a delay).
        forwarding.start_forwarders(self.shell, mc.spec.source, mc.spec.ct, self._state(mc),
                                    old_ips[0], mc.spec.ips[0].split("/")[0], ports,
                                    ssh.forward_seconds, ssh.hold_seconds, mc.ctx.journal,
                                    ssh.forward_quiet_s, via=via, udp_ports=udp)
        self.shell.run(mc.spec.source, forwarding.keep_command(self._state(mc), old_ips[0], bridge),
                       mc.ctx.journal)
        mc.event("forwarding", node=mc.spec.source, old=old_ips[0], new=mc.spec.ips[0],
                 ports=" ".join(map(str, ports)))

    def _ports(self, mc: MoveContext, ips: list[str], udp: bool = False) -> list[int]:
        """TCP ports to forward (MoveSpec.ports, else those the CT listens on), or with ``udp``
        the UDP ports its servers bound, read inside the CT (pct(1) ``exec``)."""
        if mc.spec.ports is not None and not udp:
            return list(mc.spec.ports)
        assert self.shell is not None
        table = "/proc/net/udp" if udp else "/proc/net/tcp"
        res = self.shell.run(mc.spec.source, ["pct", "exec", str(mc.vmid), "--", "cat", table],
                             mc.ctx.journal, check=False)
        state = forwarding.UDP_BOUND if udp else "0A"
        return forwarding.listening_ports(res.out, ips, state) if res.ok else []

    def switched(self, mc: MoveContext) -> None:
        """The copy serves: the record names the new address; the forwarders may retire."""
        if not self.applies(mc):
            return
        if not self._sh(mc, '[ -e "$1/dns_done" ] && echo yes', check=False).strip():
            if self.records is not None:
                records_steps.switch(self.shell, self.records, mc.spec.source, self._state(mc),
                                     mc.spec.ips[0], mc.ctx.journal)
            self._sh(mc, 'mkdir -p "$1" && touch "$1/dns_done"')

    def cleanup(self, mc: MoveContext) -> str | None:
        """What still runs on the old node (a line for CleanupPending), or None once all is done."""
        if not self.applies(mc):
            return None
        assert self.shell is not None
        until = forwarding.forwarding_until(self.shell, mc.spec.source, self._state(mc), mc.ctx.journal)
        retired = self._sh(mc, '[ -e "$1/forward.retired" ] && echo yes', check=False).strip()
        if until is not None and until > time.time() and not retired:
            return (f"forwarders of CT {mc.vmid} on {mc.spec.source} until they see no client for "
                    f"{mc.settings.ssh.forward_quiet_s:g} s (at the latest {time.strftime('%H:%M:%S UTC', time.gmtime(until))})")
        forwarding.stop_forwarders(self.shell, mc.spec.source, mc.spec.ct, self._state(mc), mc.ctx.journal)
        if self.records is not None:
            records_steps.restore(self.shell, self.records, mc.spec.source, self._state(mc),
                                  mc.spec.ips[0], mc.ctx.journal)
        self._sh(mc, 'rm -rf "$1"')
        return None

    def rollback(self, mc: MoveContext) -> None:
        """Nothing forwards any more; the record names the source's address again."""
        if not self.applies(mc):
            return
        assert self.shell is not None
        forwarding.stop_forwarders(self.shell, mc.spec.source, mc.spec.ct, self._state(mc), mc.ctx.journal)
        source = observe.locate(mc.api, mc.vmid)
        old = observe.config_ips(observe.config(mc.api, source.node, mc.vmid)) if source else []
        if self.records is not None and old:
            records_steps.restore(self.shell, self.records, mc.spec.source, self._state(mc), old[0],
                                  mc.ctx.journal)
        self._sh(mc, 'rm -rf "$1"')
