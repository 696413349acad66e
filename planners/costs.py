"""Cost model of one move: which method, how many bytes, how long, how much downtime.

Methods (``contracts/plan.md``):

- ``live``: copy while running, copy the delta again, then a short switch. OpenVZ
  ``vzmigrate --live`` (vzmigrate(8), vzctl 4.9: "For running containers, either traditional (with
  CT stop and start) or live migration is possible") checkpoints the container and copies its
  memory image too; the restore needs a compatible kernel and CPU on the destination (vzctl's
  vzmigrate checks CPU capabilities for this reason), so ferry requires identical kernels.
  Proxmox has no live migration for containers: the API's ``POST /nodes/{node}/lxc/{vmid}/migrate``
  offers ``restart`` ("Use restart migration", pve-container ``src/PVE/API2/LXC.pm``), a stop,
  a copy of the rest and a start, so the pre-copy only shortens the stop. ferry allows it to the
  same major Proxmox version or a newer one.
- ``restart`` (cold): stop, copy everything, start. Used for stopped containers (no downtime: they
  are not serving) and when the operator disables live moves.
- ``dump``: ``vzdump`` -> transfer -> restore under a new id -> IP swap; the source serves until the
  switch, so downtime is the stop of the source plus the start of the copy.

Model, with ``D`` the disk MB copied, ``B`` the MB/s one move gets (:func:`move_speed`), ``d`` the
container's dirty rate in MB/s: a pre-copy pass takes ``D/B``; the delta written meanwhile,
``d*D/B``, is copied again, and so on (repeated rsync) until one pass would take under
:data:`SETTLED_S` or :data:`MAX_PASSES` passes ran (a container writing faster than the link never
settles); the last delta is copied while the container is stopped (or frozen).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from fleet.model import Container, Node
from fleet.plan import Method
from fleet.policy import Policy

MB = 1024 * 1024
#: Pre-copy passes at most, and the pass length under which the delta counts as settled.
MAX_PASSES = 8
SETTLED_S = 1.0


@dataclass(frozen=True)
class MoveCost:
    method: Method
    bytes: int
    duration_s: float
    downtime_s: float


def _major(version: str | None) -> str | None:
    return version.split(".")[0] if version else None


def _version_key(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def live_compatible(src: Node, dst: Node) -> bool:
    """Whether a running container can go live from ``src`` to ``dst`` (see module docstring).

    OpenVZ: identical kernels. Proxmox: same major version, destination not older. A field the
    snapshot does not know counts as compatible only when it is unknown on both ends.
    """
    return _compatible(src.platform, src.kernel, src.version, dst.platform, dst.kernel, dst.version)


@lru_cache(maxsize=4096)
def _compatible(platform: str, kernel: str | None, version: str | None,
                dst_platform: str, dst_kernel: str | None, dst_version: str | None) -> bool:
    if platform != dst_platform:
        return False
    if platform == "openvz":
        return kernel == dst_kernel
    if version is None or dst_version is None:
        return version == dst_version
    return _major(version) == _major(dst_version) and _version_key(dst_version) >= _version_key(version)


def choose_method(ct: Container, src: Node, dst: Node, policy: Policy) -> Method:
    """Live for running containers on compatible nodes when the policy prefers it; else cold. A
    move from OpenVZ onto another platform runs by dump, whatever the container's state
    (adapters/mixed.py)."""
    if src.platform == "openvz" and dst.platform != "openvz":
        return "dump"
    if ct.status != "running":
        return "restart"
    if policy.prefer_live and live_compatible(src, dst):
        return "live"
    if src.platform == "openvz":
        return "dump"
    return "restart"


def _precopy(disk_mb: float, dirty_mb_s: float, speed: float) -> tuple[float, float, float]:
    """(MB copied while running, seconds spent, MB left for the final copy) of repeated passes."""
    delta, copied, spent = disk_mb, 0.0, 0.0
    for _ in range(MAX_PASSES):
        pass_s = delta / speed
        copied += delta
        spent += pass_s
        delta = min(dirty_mb_s * pass_s, disk_mb)
        if delta / speed <= SETTLED_S:
            break
    return copied, spent, delta


def move_speed(policy: Policy, src: str, dst: str, sharing: int = 1) -> float:
    """MB/s one move gets. ``default_link_mb_s`` is what a node's NIC carries, shared by the
    ``sharing`` moves running through it at once. A figure for the link itself (configured, or
    learned from finished moves: bytes over transfer time, shared already) is one move's speed and
    is taken as it is; a bandwidth budget caps either."""
    link = policy.link_mb_s.get(f"{src}->{dst}")
    speed = link if link is not None else policy.default_link_mb_s / max(1, sharing)
    cap = policy.move_bandwidth_cap(src)
    return min(speed, cap) if cap else speed


def predict(ct: Container, src: Node, dst: Node, policy: Policy, disk_copied: bool,
            method: Method | None = None, *, sharing: int = 1) -> MoveCost:
    """Bytes, duration and downtime of moving ``ct`` from ``src`` to ``dst`` (module docstring),
    by ``method`` when the caller decided it (a move changing address is never live), with
    ``sharing`` moves at once through the source's NIC. Scorers compare moves with the NIC to one
    move (a uniform factor changes no choice); the figures a plan states use the sharing the engine
    runs with (:func:`plan_sharing`)."""
    method = method or choose_method(ct, src, dst, policy)
    speed = move_speed(policy, src.name, dst.name, sharing)
    disk_mb = ct.disk_gb * 1024.0 if disk_copied else 0.0
    running = ct.status == "running"
    if method == "restart":
        copy_s = disk_mb / speed
        duration = policy.stop_s + copy_s + policy.start_s if running else copy_s + policy.start_s
        downtime = duration if running else 0.0
        return MoveCost(method, int(disk_mb * MB), round(duration, 3), round(downtime, 3))
    pre_s = disk_mb / speed
    copied_mb, precopy_s, final_mb = _precopy(disk_mb, ct.dirty_mb_per_s, speed)
    final_s = final_mb / speed
    if method == "dump":
        # vzdump writes the archive while the source runs, the transfer reads it, restore writes it.
        duration = 2 * pre_s + policy.stop_s + policy.start_s
        return MoveCost(method, int(disk_mb * MB), round(duration, 3),
                        round(policy.stop_s + policy.start_s, 3))
    if src.platform == "openvz":
        memory_s = ct.memory_used_mb / speed
        moved_mb = copied_mb + final_mb + ct.memory_used_mb
        downtime = policy.live_switch_s + final_s + memory_s
    else:
        moved_mb = copied_mb + final_mb
        downtime = policy.stop_s + final_s + policy.start_s
    duration = precopy_s + downtime
    return MoveCost(method, int(moved_mb * MB), round(duration, 3), round(downtime, 3))


def plan_sharing(policy: Policy, moves_out_of_source: int) -> int:
    """How many moves share a source's NIC while a plan runs: the engine keeps up to
    ``max_outgoing_per_node`` moves running out of a node (service.slots), so a node sending that
    many or more sends that many at once. Predicting the whole NIC per move made the default
    config's plans 40-60 % shorter than the simulated runs, whose NICs are shared."""
    return max(1, min(policy.max_outgoing_per_node, moves_out_of_source))

