"""Policy: the operator's knobs that planners and the engine obey (capacity, limits, cost model).

Policy comes from the ``[policy]`` table of ferry's config file; every field has a default that is
safe for a production fleet. Planners take a Policy as an argument and never read config
themselves.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: "SOURCE->TARGET" (two cluster names of ``[mixed.clusters]``) or "*".
ClusterCrossing = Annotated[str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9_.-]+->[A-Za-z0-9_.-]+)$", max_length=130)]


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Capacity (contracts/inventory.md): sum of configured sizes within node size x overcommit,
    # less a headroom fraction kept free on receiving nodes.
    memory_overcommit: float = Field(default=1.0, gt=0)
    cpu_overcommit: float = Field(default=4.0, gt=0)
    memory_headroom: float = Field(default=0.0, ge=0, lt=1)
    disk_headroom: float = Field(default=0.0, ge=0, lt=1)

    # Concurrency: moves that may run at once (plan waves and the engine both obey these).
    max_parallel: int = Field(default=8, ge=1)
    max_outgoing_per_node: int = Field(default=2, ge=1)
    max_incoming_per_node: int = Field(default=2, ge=1)

    # Cost model. Link bandwidth in MB/s (10 GbE carries ~1100 MB/s of rsync payload); per-link
    # figures as {"src->dst": MB/s} override the default and are later learned from finished moves.
    default_link_mb_s: float = Field(default=1000.0, gt=0)
    link_mb_s: dict[str, float] = Field(default_factory=dict)
    # Bandwidth budget for ferry's copies, MB/s out of one node (shared by its concurrent moves);
    # per-node figures override the default. None: as fast as the link allows.
    bandwidth_budget_mb_s: float | None = Field(default=None, gt=0)
    node_bandwidth_budget_mb_s: dict[str, float] = Field(default_factory=dict)
    prefer_live: bool = True
    # Platform crossings a plan may use, "SOURCE->TARGET" ("openvz->proxmox": dump on the OpenVZ
    # node, restore on Proxmox, adapters/mixed.py). Only crossings ferry has a path for are
    # accepted; none by default: a container stays on its platform.
    platform_crossings: list[Literal["openvz->proxmox"]] = Field(default_factory=list)
    # Cluster crossings a plan may use between two clusters of one platform in a mixed fleet,
    # "SOURCE->TARGET" by the [mixed.clusters] names, or "*" for any (remote_migrate, else dump
    # and restore). None by default: a container stays in its cluster.
    cluster_crossings: list[ClusterCrossing] = Field(default_factory=list)
    stop_s: float = Field(default=5.0, ge=0)
    start_s: float = Field(default=3.0, ge=0)
    live_switch_s: float = Field(default=1.0, ge=0)

    # Rebalancing.
    aggressiveness: int = Field(default=3, ge=1, le=5)
    min_gain: float = Field(default=0.01, ge=0)
    max_moves: int | None = Field(default=None, ge=0)
    cooldown_hours: float = Field(default=24.0, ge=0)

    def link_speed(self, src: str, dst: str) -> float:
        """MB/s expected on the link src -> dst (capped by the source's bandwidth budget)."""
        speed = self.link_mb_s.get(f"{src}->{dst}", self.default_link_mb_s)
        cap = self.move_bandwidth_cap(src)
        return min(speed, cap) if cap else speed

    def move_bandwidth_cap(self, node: str) -> float | None:
        """MB/s one move out of ``node`` may use: the node's budget over its concurrent moves."""
        budget = self.node_bandwidth_budget_mb_s.get(node, self.bandwidth_budget_mb_s)
        return budget / self.max_outgoing_per_node if budget else None
