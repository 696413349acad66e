"""Client load for the lab: a new HTTP connection every INTERVAL seconds until SIGTERM.

Usage: probe.py IP PORT INTERVAL OUT.json. Each attempt runs in its own thread so that a held
connection does not delay the next one. An attempt fails when it is refused, reset, or gets no
answer within 5 s (the lab's measurement convention). OUT.json holds the counts, the failures
and ``gap_s``: the longest time between two successful answers.
"""

import json
import signal
import socket
import sys
import threading
import time

TIMEOUT = 5.0


def attempt(ip, port, results, lock):
    start = time.monotonic()
    try:
        with socket.create_connection((ip, port), timeout=TIMEOUT) as s:
            s.settimeout(max(0.01, TIMEOUT - (time.monotonic() - start)))
            s.sendall(b"GET / HTTP/1.0\r\nHost: probe\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        ok = data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]
        err = None if ok else f"bad answer {data[:40]!r}"
    except OSError as exc:
        ok, err = False, f"{type(exc).__name__}: {exc}"
    end = time.monotonic()
    if end - start > TIMEOUT:
        ok, err = False, "no answer within 5 s"
    with lock:
        results.append((start, end, ok, err))


def main():
    ip, port, interval, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    results, lock, threads = [], threading.Lock(), []
    print("ready", flush=True)
    t0 = time.monotonic()
    while not stop.is_set():
        th = threading.Thread(target=attempt, args=(ip, port, results, lock), daemon=True)
        th.start()
        threads.append(th)
        stop.wait(interval)
    for th in threads:
        th.join(TIMEOUT + 1)
    ok_ends = sorted(r[1] for r in results if r[2])
    gaps = [b - a for a, b in zip(ok_ends, ok_ends[1:], strict=False)]
    widest = max(range(len(gaps)), key=gaps.__getitem__, default=None)
    failures = [{"at_s": round(r[0] - t0, 3), "error": r[3]} for r in results if not r[2]]
    slowest = sorted(results, key=lambda r: r[0] - r[1])[:5]
    summary = {"attempts": len(results), "ok": len(ok_ends), "failed": len(failures),
               "slow": [{"at_s": round(r[0] - t0, 3), "took_s": round(r[1] - r[0], 3)}
                        for r in slowest],
               "failures": failures[:20], "gap_s": round(max(gaps, default=0.0), 3),
               # where the widest gap lies, on the machine's monotonic clock (to line it up
               # with what the mover did meanwhile)
               "gap_between": [ok_ends[widest], ok_ends[widest + 1]] if widest is not None else [],
               "slowest_s": round(max((r[1] - r[0] for r in results), default=0.0), 3)}
    with open(out, "w") as fh:
        json.dump(summary, fh)


if __name__ == "__main__":
    main()
