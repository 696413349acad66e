"""UDP client load for the lab: one socket (one flow, as a game, VoIP or VPN client keeps)
sending a numbered datagram to IP:PORT every INTERVAL seconds until SIGTERM; an echo server
sends each back.

Usage: udp_probe.py IP PORT INTERVAL OUT.json. A datagram counts as lost when its echo has not
come back within 1 s. OUT.json holds ``sent``, ``answered``, ``lost``, ``lost_at_s`` (send times
of the first 50 lost, seconds from the start) and ``gap_s``: the longest time between the sends
of two answered datagrams.
"""

import json
import signal
import socket
import struct
import sys
import threading
import time

ANSWER_WITHIN_S = 1.0


def main() -> None:
    ip, port, interval, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.2)
    sent: dict[int, float] = {}
    back: dict[int, float] = {}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def receive() -> None:
        while not (stop.is_set() and time.monotonic() > stopped_at[0] + ANSWER_WITHIN_S):
            try:
                data, _peer = sock.recvfrom(64)
            except (TimeoutError, OSError):
                continue
            if len(data) >= 8:
                back.setdefault(struct.unpack("!Q", data[:8])[0], time.monotonic())

    stopped_at = [float("inf")]
    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    print("ready", flush=True)
    t0, seq = time.monotonic(), 0
    while not stop.is_set():
        sent[seq] = time.monotonic()
        try:
            sock.sendto(struct.pack("!Q", seq), (ip, port))
        except OSError:
            pass
        seq += 1
        stop.wait(interval)
    stopped_at[0] = time.monotonic()
    reader.join(ANSWER_WITHIN_S + 1)
    ok = sorted(s for s, at in sent.items() if s in back and back[s] - at <= ANSWER_WITHIN_S)
    lost = [s for s in sorted(sent) if s not in set(ok)]
    times = [sent[s] for s in ok]
    summary = {"sent": len(sent), "answered": len(ok), "lost": len(lost),
               "lost_at_s": [round(sent[s] - t0, 3) for s in lost[:50]],
               "gap_s": round(max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0), 3),
               "started_epoch": time.time() - (time.monotonic() - t0)}
    with open(out, "w") as fh:
        json.dump(summary, fh)


if __name__ == "__main__":
    main()
