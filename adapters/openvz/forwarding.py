"""Hold and forward clients of a moving container, so that none is refused during the switch.

Address changes (old node keeps serving the old address)::

    client --> OLD_IP:80 --(iptables DNAT, tag ferry-ct-CT)--> NODE_ADDR:HOLD_PORT
               socat TCP-LISTEN:HOLD_PORT,fork --> TCP:NEW_IP:80,retry (holds until NEW is up)

Same address (the address itself moves to the new node)::

    old node:  iptables -I INPUT/FORWARD -d IP --syn -j DROP   (pause: a dropped SYN is resent)
    new node:  the same "gate" until the container listens there, then ungate + arping -U

Address change: before the source stops, one *supervisor* per container starts a socat per port
listening on a free port of the node's own address, and a DNAT rule sends *new* connections to
the container's old address there; established connections keep going to the container until it
stops. socat accepts each client at once and keeps retrying the connection to the new address
(``retry``/``interval``/``connect-timeout``, socat(1)) until the destination serves it, then
splices: clients wait instead of being refused. The same forwarders serve clients with stale DNS
until the hits stop: once the DNS record names the new address (``dns_done``), the supervisor
retires them when no new connection reached the old address for ``forward_quiet_s`` (the DNAT
rules' own counters: in the nat table only a connection's first packet is counted), and at the
latest after ``forward_seconds``; it then removes its rules and the old address itself, so a
forwarder retires even if ferry never comes back. ``forward.retired`` keeps, for the record,
"START LAST_HIT END HITS" (epoch milliseconds, connections forwarded).

Same address: holding on the old node cannot work (after the gratuitous ARP the client's packets
for a held connection reach the new node, which resets them), so new SYNs are dropped on both
nodes until the container listens on the new one; the client resends a dropped SYN (RFC 6298
initial RTO 1 s): a delay, never a refusal. The gate on the new node matters because vzctl
announces the address when the container starts, before its services listen. Rules go in INPUT
(the lab double and venet-less setups) and FORWARD (OpenVZ venet routes container traffic
through the node, vzctl's vps-functions add the routes and proxy ARP).

Crash safety: everything lives on the nodes, not in ferry's memory: ``<state_dir>/<CT>/``
``forward.pid`` (the supervisor's process group), ``forward.until`` (epoch seconds), ``oldip``
(the old address kept on the node), ``ports``; and iptables rules tagged ``ferry-ct-<CT>``.
:func:`stop_forwarders` and :func:`remove_rules` undo everything idempotently.
"""

from __future__ import annotations

import ipaddress
import math
import subprocess
import time

from adapters.base import Journal, JournalEntry
from adapters.openvz.ssh import Shell

#: Remove every rule tagged $TAG (nat PREROUTING, filter INPUT/FORWARD), then the kept old address.
TEARDOWN = (
    'for t in "nat PREROUTING" "filter INPUT" "filter FORWARD"; do set -- $t; '
    'iptables -t "$1" -S "$2" 2>/dev/null | grep -F -- "$TAG " | sed "s/^-A /-D /" '
    '| xargs -r -L1 iptables -t "$1"; done; '
    'if [ -f "$STATE/oldip" ]; then read ip dev < "$STATE/oldip"; '
    'ip addr del "$ip/32" dev "$dev" 2>/dev/null; rm -f "$STATE/oldip"; fi')
# The supervisor: $1 state, $2 most seconds, $3 node address, $4 new ip, $5 tag, $6 retries,
# $7 quiet seconds, $8 seconds a UDP peer may stay silent, then PORT:HOLD (TCP) and
# PORT:HOLD:udp pairs. Runs the socats; every 0.5 s reads its hits: the new connections and UDP
# flows its DNAT rules took (nat-table counters count a flow's first packet only) plus every
# datagram its UDP counting rules saw (one UDP flow may last forever); ends once none came for
# the quiet period after the DNS switch (dns_done), or at the latest after $2 seconds; tears
# down, kills its process group.
_SUPERVISOR = (
    'STATE=$1 secs=$2 addr=$3 new=$4 TAG=$5 tries=$6 quiet=$7 UDP_IDLE=$8; shift 8; '
    'echo $$ > "$STATE/forward.pid"; start=$(date +%s%3N); '
    'echo $(( start / 1000 + secs )) > "$STATE/forward.until"; '
    'for pair in "$@"; do port=${pair%%:*} hold=${pair#*:}; case $hold in '
    '*:udp) socat -T "$UDP_IDLE" UDP-LISTEN:"${hold%:udp}",bind="$addr",fork,reuseaddr '
    'UDP:"$new":"$port" & ;; '
    '*) socat TCP-LISTEN:"$hold",bind="$addr",fork,reuseaddr,backlog=512 '
    'TCP:"$new":"$port",connect-timeout=0.25,retry="$tries",interval=0.02 & ;; esac; done; '
    'hits=0 last=$start; '
    'while now=$(date +%s%3N); [ "$now" -lt $(( start + secs * 1000 )) ]; do '
    'n=$( { iptables -t nat -L PREROUTING -n -v -x; iptables -L INPUT -n -v -x; } 2>/dev/null '
    '| grep -F -- "/* $TAG */" | awk \'{s += $1} END {print s + 0}\'); '
    'if [ "$n" != "$hits" ] || [ ! -e "$STATE/dns_done" ]; then hits=$n last=$now; fi; '
    '[ "$quiet" -gt 0 ] && [ $(( now - last )) -ge $(( quiet * 1000 )) ] && break; '
    'sleep 0.5; done; '
    'echo "$start $last $now $hits" > "$STATE/forward.retired"; '
    + TEARDOWN + '; rm -f "$STATE/forward.pid" "$STATE/forward.until"; kill -TERM -- -$$')
_WAIT_LISTEN = ('for i in $(seq 150); do ss -Hltn "sport = :$1" | grep -q . && exit 0; '
                'sleep 0.02; done; exit 1')
_STOP = ('STATE=$1 TAG=$2; if [ -f "$STATE/forward.pid" ]; then '
         'kill -TERM -- "-$(cat "$STATE/forward.pid")" 2>/dev/null; fi; '
         'rm -f "$STATE/forward.pid" "$STATE/forward.until"; ' + TEARDOWN + '; true')
_RULES_OFF = 'STATE=/nonexistent TAG=$1; ' + TEARDOWN + '; true'
# Interface holding address $1 and that interface's primary address.
_WHERE = ('dev=$(ip -o -4 addr show to "$1/32" | awk \'{print $2; exit}\'); '
          '[ -n "$dev" ] && ip -o -4 addr show dev "$dev" | awk \'{split($4,a,"/"); print $2, a[1]; exit}\'')
# Drop new SYNs to $1 (ip) on ports $3...; $2 tag. INPUT spares the node's own probes (lo).
_GATE = ('ip=$1 tag=$2; shift 2; for port in "$@"; do '
         'iptables -I INPUT -d "$ip/32" ! -i lo -p tcp --syn --dport "$port" '
         '-m comment --comment "$tag" -j DROP && '
         'iptables -I FORWARD -d "$ip/32" -p tcp --syn --dport "$port" '
         '-m comment --comment "$tag" -j DROP || exit 1; done')


#: /proc/net/udp state of a socket bound but not connected (TCP_CLOSE): a UDP server.
UDP_BOUND = "07"
#: Seconds a forwarded UDP peer may stay silent before its socat child ends (socat ``-T``).
UDP_IDLE_S = 60


def tag(ct: str) -> str:
    return f"ferry-ct-{ct}"


def hold_port(ct: str, index: int) -> int:
    """A port for the hold listener, stable per (CT, port index), outside common service ports."""
    return 40000 + (int(ct) * 16 + index) % 20000 if ct.isdigit() else 40000 + index


def listening_ports(proc_net_tcp: str, ips: list[str], state: str = "0A") -> list[int]:
    """TCP ports in LISTEN state (st 0A) on one of ``ips`` or the wildcard, from /proc/net/tcp;
    with ``state=UDP_BOUND`` and /proc/net/udp, the UDP ports a server has bound."""
    wanted = {ipaddress.IPv4Address(ip) for ip in ips} | {ipaddress.IPv4Address("0.0.0.0")}
    ports = set()
    for line in proc_net_tcp.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != state:
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


def address_of_device(shell: Shell, node: str, dev: str, journal: Journal) -> tuple[str, str] | None:
    """(``dev``, its primary IPv4 address) on ``node``, if it has one."""
    out = shell.run(node, ["sh", "-c", 'ip -o -4 addr show dev "$1" | awk \'{split($4,a,"/"); '
                           'print a[1]; exit}\'', "ferry", dev], journal, check=False).out.split()
    return (dev, out[0]) if out else None


def start_forwarders(shell: Shell, node: str, ct: str, state: str, old_ip: str, new_ip: str,
                     ports: list[int], seconds: float, hold_seconds: float,
                     journal: Journal, quiet_seconds: float = 0,
                     via: tuple[str, str] | None = None, udp_ports: list[int] = ()) -> None:
    """Hold new connections to ``old_ip:ports`` and forward them to ``new_ip`` (see module doc),
    and datagrams to ``old_ip:udp_ports`` (UDP holds nothing: a datagram arriving before the
    new address serves is lost, as it is while a same-address move switches).
    ``via``: (interface, node address) the hold listeners use, when ``old_ip`` is not yet on the
    node (a Proxmox node takes it only after the forwarders listen, so no client is refused)."""
    found = via or where(shell, node, old_ip, journal)
    if found is None or not (ports or udp_ports):
        return
    _dev, addr = found
    pairs = [f"{port}:{hold_port(ct, i)}" for i, port in enumerate(ports)]
    udp = [f"{port}:{hold_port(ct, len(ports) + i)}:udp" for i, port in enumerate(udp_ports)]
    tries = str(int(hold_seconds / 0.02) + 1)
    shell.run(node, ["sh", "-c", "setsid -f sh -c \"$@\" </dev/null >/dev/null 2>&1", "ferry",
                     _SUPERVISOR, "ferry-fwd", state, str(int(seconds)), addr, new_ip, tag(ct),
                     tries, str(math.ceil(quiet_seconds)), str(UDP_IDLE_S), *pairs, *udp], journal)
    for pair in pairs:
        shell.run(node, ["sh", "-c", _WAIT_LISTEN, "ferry", pair.split(":")[1]], journal,
                  timeout=10)
    for pair in udp:
        shell.run(node, ["sh", "-c", _WAIT_LISTEN.replace("-Hltn", "-Hlun"), "ferry",
                         pair.split(":")[1]], journal, timeout=10)
    for pair in pairs + udp:
        port, hold, *proto = pair.split(":")
        shell.run(node, _dnat(old_ip, proto[0] if proto else "tcp", port, addr, hold, tag(ct)),
                  journal)
        if proto:  # count every datagram, not only a flow's first
            shell.run(node, ["iptables", "-I", "INPUT", "-d", f"{addr}/32", "-p", "udp",
                             "--dport", hold, "-m", "comment", "--comment", tag(ct)], journal)


def _dnat(old_ip: str, proto: str, port: str, addr: str, hold: str, rule_tag: str) -> list[str]:
    return ["iptables", "-t", "nat", "-I", "PREROUTING", "-d", f"{old_ip}/32", "-p", proto,
            "--dport", port, "-m", "comment", "--comment", rule_tag, "-j", "DNAT",
            "--to-destination", f"{addr}:{hold}"]


def gate_command(ct: str, ip: str, ports: list[int]) -> list[str]:
    """The argv that drops (not refuses) new SYNs to ``ip:ports`` until :func:`remove_rules`."""
    return ["sh", "-c", _GATE, "ferry", ip, tag(ct), *map(str, ports)]


def gate(shell: Shell, node: str, ct: str, ip: str, ports: list[int], journal: Journal) -> None:
    """Run :func:`gate_command` on ``node``."""
    if ports:
        shell.run(node, gate_command(ct, ip, ports), journal)


def keep_command(state: str, old_ip: str, dev: str) -> list[str]:
    """The argv that puts the old address back on the node after the container released it
    (clients with stale DNS keep reaching the forwarders). UDP flows the container served keep
    their conntrack entries, which bypass the DNAT rules (NAT is decided on a flow's first
    packet): they are deleted (conntrack(8), when installed) so their next datagram is
    forwarded."""
    script = ('ip addr add "$1/32" dev "$2" 2>/dev/null; echo "$1 $2" > "$3/oldip"; '
              'conntrack -D -p udp --orig-dst "$1" >/dev/null 2>&1; '
              'arping -q -U -c 1 -I "$2" "$1" </dev/null >/dev/null 2>&1 &')
    return ["sh", "-c", script, "ferry", old_ip, dev, state]


def stop_forwarders(shell: Shell, node: str, ct: str, state: str, journal: Journal) -> None:
    """Kill this container's forwarders, delete its rules and the kept address. Idempotent."""
    shell.run(node, ["sh", "-c", _STOP, "ferry", state, tag(ct)], journal)


def remove_rules(shell: Shell, node: str, ct: str, journal: Journal) -> None:
    """Delete this container's iptables rules on ``node`` (the gate on the new node)."""
    shell.run(node, ["sh", "-c", _RULES_OFF, "ferry", tag(ct)], journal)


def forwarding_until(shell: Shell, node: str, state: str, journal: Journal) -> float | None:
    """Epoch second at which the forwarders of this move expire, None when none run."""
    out = shell.run(node, ["sh", "-c", '[ -f "$1/forward.pid" ] && cat "$1/forward.until"', "ferry",
                           state], journal, check=False).out.strip()
    return float(out) if out.isdigit() else None


# Probe TCP ports from a node until they answer (bounded: 200 tries, >= 4 s).
WAIT_PORT = ('for i in $(seq 200); do socat -u OPEN:/dev/null TCP:"$1":"$2",connect-timeout=0.5 '
              '2>/dev/null && exit 0; sleep 0.02; done; exit 1')
# Destination switch: $1 CTID, $2 rule tag, IP:PORT... to wait for, "--", the IPs to announce.
# Start, wait (bounded, 4000 tries, 5 ms apart) until each port answers, delete its gate rules (the ones
# forwarding.gate inserted), arping -U. the backend's switch tail removes any leftover rule by tag.
START = ('ct=$1 tag=$2; shift 2; vzctl start "$ct" || exit $?; '
          'while [ "$1" != "--" ]; do ip=${1%:*} port=${1##*:}; shift; i=0; '
          'until socat -u OPEN:/dev/null TCP:"$ip":"$port",connect-timeout=0.5 2>/dev/null; do '
          'i=$((i + 1)); [ $i -lt 4000 ] || exit 3; sleep 0.005; done; '
          'iptables -D INPUT -d "$ip/32" ! -i lo -p tcp --syn --dport "$port" -m comment '
          '--comment "$tag" -j DROP 2>/dev/null; iptables -D FORWARD -d "$ip/32" -p tcp --syn '
          '--dport "$port" -m comment --comment "$tag" -j DROP 2>/dev/null; done; shift; '
          'for ip in "$@"; do dev=$(ip -o -4 addr show to "$ip/32" | awk \'{print $2; exit}\'); '
          '[ -n "$dev" ] && arping -q -U -c 1 -I "$dev" "$ip" </dev/null >/dev/null 2>&1 & '
          'done; true')


def dns_hook(hook: list[str], old: str, new: str, journal: Journal) -> None:
    """Run the operator's DNS hook (``openvz.dns_hook`` + OLD_IP NEW_IP) on ferry's host, once
    the old address forwards to the new one; journaled like a remote command."""
    if not hook:
        return
    argv = [*hook, old, new]
    started = time.monotonic()
    try:
        status: int | None = subprocess.run(argv, capture_output=True, timeout=60).returncode
    except (OSError, subprocess.TimeoutExpired):
        status = None
    journal(JournalEntry(host="localhost", what=argv, status=status,
                         duration_ms=(time.monotonic() - started) * 1000))
