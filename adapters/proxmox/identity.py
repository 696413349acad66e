"""Who a dump-moved source is, so that a later cleanup never stops, tags or purges another CT.

    cutover: source config --of_config--> Identity --record_tag--> tag on the restored copy
             ("ferry-id-<ct>-<fingerprint>-recorded", set by the same restore call that creates it)
    cleanup: CT <ct> on the source node --of_config--> fingerprint --claim--> Claim
               matching record, state fits  -> ours: retire (mark "retired"), purge (mark "purged")
               no match / purged / untagged -> a stranger that took the VMID: left untouched

Why the record lives on the copy: VMIDs are reused (GET /cluster/nextid hands out the lowest free
one), and the engine writes a move's options only when it creates the move, so the source cannot
carry the proof of its own identity past its purge. The copy outlives the source and already
carries ferry's marker tag; a tag is set atomically with the restore (POST /nodes/{node}/lxc
``tags``) and fits pve-common's ``pve-tag`` format ``^(?i)[a-z0-9_][a-z0-9_\\-+.]*$``.

What the identity is made of (pve-container src/PVE/LXC/Config.pm, the config schema):
- ``net[n]`` ``hwaddr``: "dynamically allocated by default" at creation, and a restore with
  ``unique`` assigns "a unique random ethernet address" (pve-docs pct(1)): a new CT under a
  reused VMID gets new MACs. The strongest mark.
- ``hostname`` and the ``rootfs`` volume id (without ``size``, a "read only value" that a resize
  changes). A new CT under the same VMID on the same storage often gets the same volume name
  (``subvol-<vmid>-disk-0``), so the volume id alone proves nothing.
- a digest of ``arch``, ``ostype``, ``unprivileged`` (read-only after creation) and the ``mp[n]``
  volumes. Not Proxmox's own ``digest``: that is the SHA-1 of the whole config file
  (parse_pct_config), which changes with every write, ferry's retire tag included; nor
  ``tags``, ``lock``, ``description``, memory or cores, which operators and ferry change.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from adapters.proxmox import observe
from adapters.proxmox.client import Api
from adapters.proxmox.observe import Placement

RECORD_PREFIX = "ferry-id-"
STATES = ("recorded", "retired", "purged")
_RECORD = re.compile(rf"^{RECORD_PREFIX}(\d+)-([0-9a-f]{{12}})-({'|'.join(STATES)})$")
_DIGESTED = ("arch", "ostype", "unprivileged")


def _volume(value: Any) -> str:
    """The volume id of a rootfs/mp property string (its first, key-less part)."""
    return str(value or "").split(",", 1)[0]


@dataclass(frozen=True)
class Identity:
    """The stable marks of one container's config."""

    hostname: str
    macs: tuple[str, ...]
    rootfs: str
    digest: str

    @property
    def fingerprint(self) -> str:
        """12 hex digits (48 bits) of SHA-256 over every mark: short enough for a tag."""
        text = json.dumps([self.hostname, list(self.macs), self.rootfs, self.digest])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self) -> str:
        return f"hostname {self.hostname or '-'}, MACs {','.join(self.macs) or '-'}, rootfs {self.rootfs or '-'}"


def of_config(conf: dict[str, Any]) -> Identity:
    nets = sorted((k for k in conf if re.fullmatch(r"net\d+", k)), key=lambda k: int(k[3:]))
    macs = tuple(f"{k}={observe.parse_property_string(str(conf[k])).get('hwaddr', '').upper()}" for k in nets)
    mps = sorted((k, _volume(conf[k])) for k in conf if re.fullmatch(r"mp\d+", k))
    stable = [[k, str(conf.get(k, ""))] for k in _DIGESTED] + [list(mp) for mp in mps]
    digest = hashlib.sha256(json.dumps(stable).encode()).hexdigest()
    return Identity(str(conf.get("hostname") or ""), macs, _volume(conf.get("rootfs")), digest)


def record_tag(ct: int | str, fingerprint: str, state: str) -> str:
    return f"{RECORD_PREFIX}{ct}-{fingerprint}-{state}"


@dataclass(frozen=True)
class Record:
    """One identity record: which copy holds it, for which source VMID, in which state."""

    copy: Placement
    ct: int
    fingerprint: str
    state: str

    @property
    def tag(self) -> str:
        return record_tag(self.ct, self.fingerprint, self.state)


def records(cts: dict[int, Placement], ct: int) -> list[Record]:
    """Every record of source VMID ``ct`` on any container, in VMID order."""
    out = []
    for place in sorted(cts.values(), key=lambda p: p.vmid):
        for tag in place.tags:
            match = _RECORD.match(tag)
            if match and int(match[1]) == ct:
                out.append(Record(place, ct, match[2], match[3]))
    return out


@dataclass(frozen=True)
class Claim:
    """The verdict on the CT now under a source's VMID: ``record`` is the matching record (None
    for a move restored before ferry kept records), ``stranger`` why it is not the source."""

    record: Record | None
    stranger: str | None = None


def claim(api: Api, cts: dict[int, Placement], place: Placement, *, retired: bool) -> Claim:
    """Is ``place`` the source its records describe? ``retired``: it carries ferry's retire tag.
    A record marked "retired" proves the source was tagged, so an untagged twin (re-created from
    a backup taken before) is a stranger; a record marked "purged" makes every twin one."""
    found = records(cts, place.vmid)
    if not found:
        return Claim(None)
    ident = of_config(observe.config(api, place.node, place.vmid))
    mine = next((r for r in found if r.fingerprint == ident.fingerprint), None)
    where = f"CT {place.vmid} on {place.node}"
    if mine is None:
        held = ", ".join(f"{r.fingerprint} on {r.copy.vmid}" for r in found)
        return Claim(None, f"{where} is not the source ferry retired: its identity {ident.fingerprint} "
                           f"({ident.describe()}) matches no record ({held}); the source was purged "
                           f"and its VMID reused")
    if mine.state == "purged" or (mine.state == "retired" and not retired):
        return Claim(None, f"{where} has the identity of a source ferry already {mine.state} "
                           f"(record on {mine.copy.vmid}) but is a re-created twin; left untouched")
    return Claim(mine)


def mark(api: Api, record: Record, state: str) -> Record:
    """Advance ``record`` on its copy to ``state`` (one PUT of the copy's tags)."""
    if record.state == state:
        return record
    new = Record(record.copy, record.ct, record.fingerprint, state)
    tags = [new.tag if t == record.tag else t for t in record.copy.tags]
    api.put(f"/nodes/{record.copy.node}/lxc/{record.copy.vmid}/config", tags=";".join(tags))
    return new


def adopt(api: Api, copy: Placement, source: Placement, *, retired: bool) -> Record:
    """Record the identity of ``source`` on ``copy`` when the copy was restored without one."""
    ident = of_config(observe.config(api, source.node, source.vmid))
    rec = Record(copy, source.vmid, ident.fingerprint, "retired" if retired else "recorded")
    api.put(f"/nodes/{copy.node}/lxc/{copy.vmid}/config", tags=";".join([*copy.tags, rec.tag]))
    return rec
