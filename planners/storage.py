"""Which storage of a destination node each arriving disk lands on.

The disk rule (:mod:`planners.rules`) asks whether a choice exists; placement records the choice in
the plan (``target_storage``). A container keeps its storage id when the destination has it with
room; otherwise it goes to the destination storage with the most free space that fits it (ties:
storage id order). A disk on a shared storage the destination also mounts moves no bytes.
"""

from __future__ import annotations

from planners.state import EPS, FleetState, Placement
from planners.units import Unit, arriving


def _storage_for(st: FleetState, ct: str, node: str, taken: dict[str, float]) -> tuple[str | None, float]:
    """(storage, GB it consumes) for one arriving container, or (None, 0) when nothing fits."""
    c = st.containers[ct]
    here = st.where[ct]
    storages = st.nodes[node].storage
    ranked = ([here.storage] if here.storage in storages else []) + sorted(
        (s for s in storages if s != here.storage),
        key=lambda s: (-(st.disk_free(node, s) - taken.get(s, 0.0)), s))
    for sid in ranked:
        if not st.copies_disk(here, Placement(node, sid)):
            return sid, 0.0  # the same shared storage: nothing is written, whatever its fill
        if c.disk_gb <= st.disk_free(node, sid) - taken.get(sid, 0.0) + EPS:
            return sid, c.disk_gb
    return None, 0.0


def assign_storage(st: FleetState, unit: Unit, node: str) -> dict[str, str | None] | str:
    """Choose a target storage on ``node`` for each arriving member, or say why none fits."""
    taken: dict[str, float] = {}
    out: dict[str, str | None] = {}
    for ct in arriving(st, unit, node):
        if st.where[ct].storage is None:
            out[ct] = None
            continue
        sid, need = _storage_for(st, ct, node, taken)
        if sid is None:
            storages = st.nodes[node].storage
            best = max(sorted(storages), key=lambda s: st.disk_free(node, s) - taken.get(s, 0.0), default=None)
            if best is None:
                return f"needs {st.containers[ct].disk_gb:g} GB disk for {ct}; {node} has no storage"
            free = max(st.disk_free(node, best) - taken.get(best, 0.0), 0.0)
            return f"needs {st.containers[ct].disk_gb:g} GB disk for {ct}; {node}:{best} has {free:.0f} GB free"
        taken[sid] = taken.get(sid, 0.0) + need
        out[ct] = sid
    return out
