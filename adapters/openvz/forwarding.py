"""Hold and forward clients of a moving container, on its old node, so none is refused.

    client --> OLD_IP:80 --(iptables DNAT, tag ferry-ct-CT)--> NODE_ADDR:HOLD_PORT
               socat TCP-LISTEN:HOLD_PORT,fork --> TCP:NEW_IP:80,retry (holds until NEW is up)

Before the source stops, a socat per port listens on a free port of the node's own address and a
DNAT rule sends *new* connections to the container's old address there; established connections
keep going to the container until it stops. socat accepts each client at once and keeps retrying
the connection to the new address (``retry``/``interval``/``connect-timeout``, socat(1)) until
the destination serves it, then splices: during the switch clients wait instead of being
refused. When the address changes, the same forwarder serves clients with stale DNS for
``forward_seconds`` (the DNS TTL plus a margin).

Crash safety: everything lives on the old node and is found again there, not in ferry's memory:
``<state_dir>/<CT>/fwd-<port>.pid`` (process group of each forwarder), the DNAT rules tagged
``ferry-ct-<CT>``, and ``oldip`` (the old address kept on the node). Each forwarder runs under
``timeout`` and removes its rules when it ends, so it expires even if ferry never comes back;
:func:`stop_forwarders` removes everything idempotently (cleanup, rollback).
"""

from __future__ import annotations

import ipaddress

from adapters.base import Journal
from adapters.openvz.ssh import Shell

# One forwarder: record the process group, run socat for at most $2 seconds, then remove this
# container's DNAT rules (they would point at a closed port) and the pid file.
_FORWARDER = (
    'echo $$ > "$1"; '
    'timeout --foreground "$2" socat TCP-LISTEN:"$3",bind="$4",fork,reuseaddr '
    'TCP:"$5":"$6",connect-timeout=0.5,retry=600,interval=0.05; '
    'iptables -t nat -S PREROUTING | grep -F -- "$7 " | sed "s/^-A /-D /" '
    '| xargs -r -L1 iptables -t nat; rm -f "$1"')
_WAIT_LISTEN = ('for i in $(seq 150); do ss -Hltn "sport = :$1" | grep -q . && exit 0; '
                'sleep 0.02; done; exit 1')
_STOP = (
    'for f in "$1"/fwd-*.pid; do [ -f "$f" ] || continue; '
    'kill -TERM -- "-$(cat "$f")" 2>/dev/null; rm -f "$f"; done; '
    'iptables -t nat -S PREROUTING 2>/dev/null | grep -F -- "$2 " | sed "s/^-A /-D /" '
    '| xargs -r -L1 iptables -t nat; '
    'iptables -S INPUT 2>/dev/null | grep -F -- "$2 " | sed "s/^-A /-D /" '
    '| xargs -r -L1 iptables; '
    'if [ -f "$1/oldip" ]; then read ip dev < "$1/oldip"; '
    'ip addr del "$ip/32" dev "$dev" 2>/dev/null; rm -f "$1/oldip"; fi; true')
# Interface holding address $1 and that interface's primary address.
_WHERE = ('dev=$(ip -o -4 addr show to "$1/32" | awk \'{print $2; exit}\'); '
          '[ -n "$dev" ] && ip -o -4 addr show dev "$dev" | awk \'{split($4,a,"/"); print $2, a[1]; exit}\'')


def tag(ct: str) -> str:
    return f"ferry-ct-{ct}"


def hold_port(ct: str, index: int) -> int:
    """A port for the hold listener, stable per (CT, port index), outside common service ports."""
    return 40000 + (int(ct) * 16 + index) % 20000 if ct.isdigit() else 40000 + index


def listening_ports(proc_net_tcp: str, ips: list[str]) -> list[int]:
    """TCP ports in LISTEN state (st 0A) on one of ``ips`` or the wildcard, from /proc/net/tcp."""
    wanted = {ipaddress.IPv4Address(ip) for ip in ips} | {ipaddress.IPv4Address("0.0.0.0")}
    ports = set()
    for line in proc_net_tcp.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":
            continue
        addr_hex, port_hex = parts[1].split(":")
        addr = ipaddress.IPv4Address(bytes.fromhex(addr_hex)[::-1])
        if addr in wanted:
            ports.add(int(port_hex, 16))
    return sorted(ports)


def where(shell: Shell, node: str, ip: str, journal: Journal) -> tuple[str, str] | None:
    """(interface, node address) of the interface holding ``ip`` on ``node``, if any."""
    out = shell.run(node, ["sh", "-c", _WHERE, "ferry", ip], journal, check=False).out.split()
    return (out[0], out[1]) if len(out) == 2 else None


def start_forwarders(shell: Shell, node: str, ct: str, state: str, old_ip: str, new_ip: str,
                     ports: list[int], seconds: float, journal: Journal) -> None:
    """Hold new connections to ``old_ip:ports`` and forward them to ``new_ip`` (see module doc)."""
    found = where(shell, node, old_ip, journal)
    if found is None:
        return
    _dev, addr = found
    for index, port in enumerate(ports):
        hold = hold_port(ct, index)
        pidfile = f"{state}/fwd-{port}.pid"
        shell.run(node, ["sh", "-c", "setsid -f sh -c \"$@\" </dev/null >/dev/null 2>&1", "ferry",
                         _FORWARDER, "ferry-fwd", pidfile, str(int(seconds)), str(hold), addr,
                         new_ip, str(port), tag(ct)], journal)
        shell.run(node, ["sh", "-c", _WAIT_LISTEN, "ferry", str(hold)], journal, timeout=10)
        shell.run(node, ["iptables", "-t", "nat", "-I", "PREROUTING", "-d", f"{old_ip}/32", "-p",
                         "tcp", "--dport", str(port), "-m", "comment", "--comment", tag(ct),
                         "-j", "DNAT", "--to-destination", f"{addr}:{hold}"], journal)


def pause_new_connections(shell: Shell, node: str, ct: str, ip: str, ports: list[int],
                          journal: Journal) -> None:
    """Same address on the new node: drop (not refuse) new SYNs to ``ip`` here while it moves.

    Holding clients on the old node cannot work when the address itself moves: the gratuitous
    ARP from the new node sends the held connections' packets there, which resets them. A
    dropped SYN is retransmitted by the client after 1 s (RFC 6298 initial RTO) and then reaches
    the new node: a delay, not a failure. Established connections finish undisturbed.
    """
    for port in ports:
        shell.run(node, ["iptables", "-I", "INPUT", "-d", f"{ip}/32", "-p", "tcp", "--syn",
                         "--dport", str(port), "-m", "comment", "--comment", tag(ct), "-j",
                         "DROP"], journal)


def keep_old_address(shell: Shell, node: str, state: str, old_ip: str, dev: str,
                     journal: Journal) -> None:
    """Put the old address back on the node after the container released it (stale clients)."""
    script = ('ip addr add "$1/32" dev "$2" 2>/dev/null; echo "$1 $2" > "$3/oldip"; '
              'arping -q -U -c 1 -I "$2" "$1" </dev/null >/dev/null 2>&1 &')
    shell.run(node, ["sh", "-c", script, "ferry", old_ip, dev, state], journal)


def stop_forwarders(shell: Shell, node: str, ct: str, state: str, journal: Journal) -> None:
    """Kill this container's forwarders, delete their rules and the kept address. Idempotent."""
    shell.run(node, ["sh", "-c", _STOP, "ferry", state, tag(ct)], journal)
