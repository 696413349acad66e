"""What a lab node's forwarder supervisor left when it retired (adapters/openvz/forwarding.py)."""

from __future__ import annotations

import time

from tests.doubles.lab.netlab import Lab


def retired(lab: Lab, ct: str, *, node: str = "n1", limit_s: float = 30) -> list[int]:
    """``[START, LAST_HIT, END, HITS]`` (epoch ms, connections) from ``forward.retired``, waiting
    up to ``limit_s`` for the forwarders of CT ``ct`` to retire."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        words = lab.nodes[node].run(f"cat /var/lib/ferry/{ct}/forward.retired 2>/dev/null; true").split()
        if len(words) == 4:
            return [int(w) for w in words]
        time.sleep(0.2)
    raise AssertionError(f"the forwarders of CT {ct} did not retire within {limit_s} s")
