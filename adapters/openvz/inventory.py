"""Read an OpenVZ node into ferry's snapshot (``contracts/inventory.md``, platform "openvz").

    vzlist -a -j -o ctid,status,physpages,diskspace,cpus --> numbers and states (JSON)
    /etc/vz/conf/CTID.conf (ctid.conf(5))                --> HOSTNAME, NAME, IP_ADDRESS, limits
    nproc, uname -r, /proc/meminfo, /proc/loadavg, df    --> Node
                                   \\__ parse_* (pure) __/ --> fleet.model.Inventory

Units, from vzctl's man pages (ctid.conf(5), vzctl(8)): PHYSPAGES and SWAPPAGES are 4 KiB pages
as "barrier:limit" (the limit is the size), DISKSPACE is KiB as "soft:hard", IP_ADDRESS a
space-separated list (optionally with /mask). vzlist -j prints string fields *unescaped*
(src/vzlist.c print_json_str), so a hostile HOSTNAME would break the JSON: ferry asks vzlist
only for numeric fields and reads names from the config files with its own parser.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from adapters.base import PermanentError, TransientError
from adapters.reported import reported, shown_text, shown_texts
from fleet.model import Container, Inventory, Node

PAGE_KIB = 4
#: The one storage id of an OpenVZ node: the filesystem under /var/lib/vz holding every private area.
STORAGE_ID = "vz"
CONF_SCRIPT = 'for f in /etc/vz/conf/*.conf; do [ -f "$f" ] && { echo "==> $f"; cat "$f"; }; done; true'
NODE_SCRIPT = ("nproc; uname -r; head -1 /proc/meminfo; cat /proc/loadavg; "
               "df -Pk /var/lib/vz | tail -1")
VZLIST_ARGV = ["vzlist", "-a", "-j", "-o", "ctid,status,physpages,diskspace,cpus"]
_LINE = re.compile(r'^\s*([A-Z][A-Z0-9_]*)\s*=\s*(?:"([^"]*)"|\'([^\']*)\'|(\S*))\s*(?:#.*)?$')


def ct_status(node: str, ct: str, answer: str, exit_status: int | None = 0, err: str = "") -> str:
    """"absent", "stopped" or "running" from ``vzctl status``'s one line (vzctl's src/vzctl.c:
    ``CTID <id> exist|deleted mounted|unmounted running|down [suspended]``). vzctl refusing (a
    non-zero exit, e.g. 21 "Invalid CTID") raises PermanentError with its words; any other answer
    (cut short) raises TransientError: read as "absent" or "stopped" it would let a rollback
    delete a container, a cleanup retire a running source, or a returned node keep a running copy."""
    if exit_status:
        raise PermanentError(f"{node}: `vzctl status {ct}` exited {exit_status}: {err.strip()[-200:]}")
    words = answer.split()
    if len(words) < 5 or words[2] not in ("exist", "deleted") or words[4] not in ("running", "down"):
        raise TransientError(f"{node}: unreadable answer of `vzctl status {ct}`: {answer.strip()[-120:]!r}")
    if words[2] == "deleted":
        return "absent"
    return "running" if words[4] == "running" else "stopped"


def parse_conf(text: str) -> dict[str, str]:
    """Parse a ctid.conf (shell-style KEY="value" lines). Never evaluates anything."""
    conf: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            conf[m.group(1)] = next(g for g in m.groups()[1:] if g is not None)
    return conf


def split_conf_dump(text: str) -> dict[str, dict[str, str]]:
    """Split the output of CONF_SCRIPT into {ctid: conf} (only numeric CTID.conf files)."""
    out: dict[str, dict[str, str]] = {}
    for chunk in text.split("==> ")[1:]:
        header, _, body = chunk.partition("\n")
        m = re.search(r"/(\d+)\.conf$", header.strip())
        if m:
            out[m.group(1)] = parse_conf(body)
    return out


def limit_of(value: str | None) -> int:
    """The limit (second) part of a "barrier:limit" pair; 0 when unset or unlimited."""
    if not value:
        return 0
    part = value.split(":")[-1]
    return int(part) if part.isdigit() else 0


def ips_of(conf: dict[str, str]) -> list[str]:
    return [ip.split("/")[0] for ip in conf.get("IP_ADDRESS", "").split()]


def serving_ips(status: str, conf: dict[str, str] | None) -> tuple[str, ...]:
    """The addresses a copy serves: its configured IPs while it runs, none otherwise."""
    return tuple(ips_of(conf or {})) if status == "running" else ()


def parse_node(name: str, text: str) -> Node:
    lines = text.strip().splitlines()
    cpus = int(lines[0])
    kernel = lines[1].strip()
    mem_kib = int(lines[2].split()[1])
    load = float(lines[3].split()[0])
    df = lines[4].split()
    total_kib, used_kib = int(df[1]), int(df[2])
    return Node(name=name, platform="openvz", cpus=cpus, memory_mb=max(1, mem_kib // 1024),
                cpu_usage=min(1.0, load / cpus), kernel=kernel,
                storage={STORAGE_ID: {"total_gb": total_kib / 2**20, "used_gb": used_kib / 2**20}})


def unreachable_node(name: str) -> Node:
    """A node SSH cannot reach: offline (it receives nothing); its figures are unknown, so the
    smallest a node can have stand in for them."""
    return Node(name=name, platform="openvz", cpus=1, memory_mb=1, online=False)


def container_from(node: str, row: dict[str, Any], conf: dict[str, str]) -> Container:
    ctid = str(row["ctid"])
    ram_pages = limit_of(conf.get("PHYSPAGES")) or (row.get("physpages") or {}).get("limit", 0)
    held_pages = (row.get("physpages") or {}).get("held", 0)
    disk_kib = (row.get("diskspace") or {}).get("usage", 0)
    status = row.get("status", "stopped")
    return reported(Container, dict(
        id=ctid, node=node, name=shown_text(conf.get("HOSTNAME") or conf.get("NAME")),
        status=status if status in ("running", "stopped", "suspended") else "stopped",
        cpus=float(conf.get("CPUS") or row.get("cpus") or 1) or 1.0,
        memory_mb=ram_pages * PAGE_KIB // 1024, memory_used_mb=held_pages * PAGE_KIB // 1024,
        disk_gb=round(disk_kib / 2**20, 3), storage=STORAGE_ID, ips=ips_of(conf),
        tags=shown_texts([t for t in re.split(r"[\s,;]+", conf.get("DESCRIPTION", "")) if t.startswith("plb_")])),
        where=f"container {ctid} on {node}")


def build_inventory(nodes: list[Node], containers: list[Container]) -> Inventory:
    taken = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Inventory(taken_at=taken, nodes=nodes, containers=containers)


def parse_vzlist_json(text: str) -> list[dict[str, Any]]:
    rows = json.loads(text or "[]")
    return [r for r in rows if isinstance(r, dict) and "ctid" in r]
