"""Check a simulated world against the invariants ferry promises, after any number of moves.

Used by the demo's last line, by tests and by the chaos test: every container exists exactly once
as a live copy, in the state it had, with its original data, and no address is held twice.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from adapters.sim.world import WorldFile, data_checksum


def audit_world(world_file: str, *, forbidden_nodes: frozenset[str] = frozenset()) -> list[str]:
    """Every broken invariant, as one line each (empty: the world is sound)."""
    world: dict[str, Any] = WorldFile(world_file).read()
    problems = []
    ips: Counter[str] = Counter()
    for ct, data in world["containers"].items():
        copies = world["copies"].get(ct, {})
        home = world["home"].get(ct)
        complete = {n: c for n, c in copies.items() if c["status"] in ("running", "stopped")}
        running = [n for n, c in copies.items() if c["status"] == "running"]
        if len(running) > 1:
            problems.append(f"{ct} runs on {len(running)} nodes: {sorted(running)}")
        if home not in complete:
            problems.append(f"{ct}: no complete copy on its home node {home}")
            continue
        if complete[home].get("checksum") != data_checksum(ct, world["seed"]):
            problems.append(f"{ct}: data checksum on {home} differs from the original")
        if home in forbidden_nodes:
            problems.append(f"{ct} is still on {home}")
        if world["locks"].get(ct):
            problems.append(f"{ct} is still locked by {world['locks'][ct]}")
        if running:
            ips.update(data.get("ips", []))
    problems += [f"IP {ip} is held by {n} running containers" for ip, n in ips.items() if n > 1]
    return problems


def statuses(world_file: str) -> dict[str, str]:
    """Each container's status at its home node (for 'nothing changed state' checks)."""
    world = WorldFile(world_file).read()
    return {ct: world["copies"][ct][home]["status"] for ct, home in world["home"].items()
            if home in world["copies"].get(ct, {})}
