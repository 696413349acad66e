"""Client load for the lab: a new HTTP connection every INTERVAL seconds until SIGTERM.

Usage: probe.py IP PORT INTERVAL OUT.json. IP may be NAME@SERVER:DNSPORT: then every attempt
first resolves NAME through that DNS server with a caching stub resolver that keeps an answer
for its TTL, as clients do (a failed resolution is a failed attempt), and OUT.json also says
which address each attempt used (``used``: address -> [count, first, last start, epoch s]).
Each attempt runs in its own thread so that a held
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


def resolver_for(target):
    """A caching stub resolver for NAME@SERVER:PORT, or None for a plain address."""
    if "@" not in target:
        return None
    import dns.resolver

    name, _, server = target.partition("@")
    host, _, dns_port = server.rpartition(":")
    res = dns.resolver.Resolver(configure=False)
    res.nameservers, res.port, res.lifetime = [host], int(dns_port), TIMEOUT
    res.cache = dns.resolver.Cache(cleaning_interval=3600)
    return name, res


def address_of(target, resolver, used, lock):
    if resolver is None:
        return target
    name, res = resolver
    ip = res.resolve(name, "A")[0].address
    now = time.time()
    with lock:
        count, first, _last = used.get(ip, (0, now, now))
        used[ip] = (count + 1, first, now)
    return ip


def attempt(target, port, results, lock, resolver=None, used=None):
    start = time.monotonic()
    try:
        ip = address_of(target, resolver, used, lock)
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
    except Exception as exc:  # refused, reset, timed out or no DNS answer: a failed attempt
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
    results, lock, threads, used = [], threading.Lock(), [], {}
    resolver = resolver_for(ip)
    print("ready", flush=True)
    t0, t0_epoch = time.monotonic(), time.time()
    while not stop.is_set():
        th = threading.Thread(target=attempt, args=(ip, port, results, lock, resolver, used),
                              daemon=True)
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
               "slowest_s": round(max((r[1] - r[0] for r in results), default=0.0), 3),
               "used": {ip: list(v) for ip, v in used.items()},
               "started_epoch": t0_epoch}  # at_s + started_epoch: a failure's epoch second
    with open(out, "w") as fh:
        json.dump(summary, fh)


if __name__ == "__main__":
    main()
