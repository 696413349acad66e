"""Who answers for each address: an ARP watcher for the lab's client namespace.

Usage: arpwatch.py IFACE OWN_IP OUT.json IP... ; runs until SIGTERM, then writes OUT.json.

Every ROUND_S it broadcasts an ARP request for each IP and collects the replies for the rest of
the round; a host holding the address on the segment answers with its own MAC (Linux answers for
every local address: arp_ignore 0). Two MACs answering for one address in one round is an address
held twice, the thing an evacuation from backups must never cause. OUT.json per IP: ``rounds``,
``answered`` (rounds with at least one answer), ``max_holders`` (most MACs in one round),
``twice`` (the first rounds with two holders: seconds since start and the MACs) and ``macs``
(every MAC ever seen for it, in order of appearance).
"""

import json
import signal
import socket
import struct
import sys
import threading
import time

ROUND_S = 0.15
ETH_P_ARP = 0x0806


def request(own_mac: bytes, own_ip: bytes, target: bytes) -> bytes:
    eth = b"\xff" * 6 + own_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, own_mac, own_ip, b"\x00" * 6, target)
    return eth + arp


def replies(sock: socket.socket, until: float) -> list[tuple[str, str]]:
    """(IP, MAC) of every ARP reply received before ``until``."""
    out = []
    while (left := until - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            frame = sock.recv(128)
        except (TimeoutError, BlockingIOError):
            break
        if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_P_ARP:
            continue
        op, sha, spa = struct.unpack("!H", frame[20:22])[0], frame[22:28], frame[28:32]
        if op == 2:
            out.append((socket.inet_ntoa(spa), sha.hex(":")))
    return out


def main() -> None:
    iface, own_ip, out_path, ips = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    own_mac = bytes.fromhex(open(f"/sys/class/net/{iface}/address").read().strip().replace(":", ""))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((iface, 0))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    seen = {ip: {"rounds": 0, "answered": 0, "max_holders": 0, "twice": [], "macs": []} for ip in ips}
    t0 = time.monotonic()
    print("ready", flush=True)
    while not stop.is_set():
        for ip in ips:
            sock.send(request(own_mac, socket.inet_aton(own_ip), socket.inet_aton(ip)))
        holders: dict[str, set[str]] = {ip: set() for ip in ips}
        for ip, mac in replies(sock, time.monotonic() + ROUND_S):
            if ip in holders:
                holders[ip].add(mac)
        for ip, macs in holders.items():
            entry = seen[ip]
            entry["rounds"] += 1
            entry["answered"] += bool(macs)
            entry["max_holders"] = max(entry["max_holders"], len(macs))
            entry["macs"] += [m for m in sorted(macs) if m not in entry["macs"]]
            if len(macs) > 1 and len(entry["twice"]) < 10:
                entry["twice"].append([round(time.monotonic() - t0, 2), sorted(macs)])
    with open(out_path, "w") as fh:
        json.dump(seen, fh)


if __name__ == "__main__":
    main()
