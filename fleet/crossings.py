"""What a planned move crosses: a platform (OpenVZ -> Proxmox) or a cluster boundary (two Proxmox
clusters of one mixed fleet), said at the end of the move's reason so a reader of the plan sees
that this move runs by another path than a migration inside one cluster.

    plan + inventory --> each move: source and target node's platform and ``cluster:<name>`` tag
                         (adapters/mixed.py tags every node of a mixed fleet with its cluster)
                     --> reason + "; crosses platforms: openvz -> proxmox (...)"
                         reason + "; crosses clusters: pve-a -> pve-b (...)"

A compatible extension of the plan contract: ``reason`` stays free text, a plan within one
cluster reads as before, and the same snapshot still gives the same plan byte for byte.
"""

from __future__ import annotations

from fleet.model import Inventory, Node
from fleet.plan import Move, Plan

CLUSTER_TAG = "cluster:"
#: How each kind of crossing runs, by the move's method (adapters/mixed.py picks the path).
_PLATFORM_PATH = "vzdump on the source, copy, restore converted"
_PLATFORM_RESTORE = "its backup restored converted"
_CLUSTER_PATH = {"dump": "vzdump, restore from the shared backup storage",
                 "restart": "remote_migrate, else vzdump and restore",
                 "live": "remote_migrate, else vzdump and restore"}


def cluster_of(node: Node) -> str | None:
    """The node's cluster in a mixed fleet (its ``cluster:<name>`` tag); None outside one."""
    return next((t[len(CLUSTER_TAG):] for t in node.tags if t.startswith(CLUSTER_TAG)), None)


def crossing(move: Move, source: Node, target: Node) -> str | None:
    """The words naming what ``move`` crosses, or None when it stays in its cluster."""
    clusters = cluster_of(source), cluster_of(target)
    across = None not in clusters and clusters[0] != clusters[1]
    if source.platform != target.platform:
        where = f", cluster {clusters[0]} -> {clusters[1]}" if across else ""
        how = _PLATFORM_RESTORE if move.restore is not None else _PLATFORM_PATH
        return f"crosses platforms: {source.platform} -> {target.platform}{where} ({how})"
    if across:
        return f"crosses clusters: {clusters[0]} -> {clusters[1]} ({_CLUSTER_PATH[move.method]})"
    return None


def name_crossings(plan: Plan, inv: Inventory) -> Plan:
    """``plan`` with every crossing move's reason saying what it crosses (module doc)."""
    nodes = {n.name: n for n in inv.nodes}
    moves = []
    for move in plan.moves:
        source, target = nodes.get(move.from_node), nodes.get(move.to)
        said = crossing(move, source, target) if source and target else None
        if said and said not in move.reason:
            move = move.model_copy(update={"reason": f"{move.reason}; {said}" if move.reason else said})
        moves.append(move)
    return plan.model_copy(update={"moves": moves})
