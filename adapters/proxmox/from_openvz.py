"""An OpenVZ container's config as the parameters of a Proxmox restore, key by key.

    <CTID>.conf (adapters/openvz/inventory.parse_conf) + where it lands (RestoreTarget)
        --restore_params--> POST /nodes/{node}/lxc {vmid, ostemplate=<archive>, restore=1, ...}

The restore is what ``pct restore`` sends for a vzdump archive. What must be converted follows
the Proxmox VE documentation of moving OpenVZ containers to LXC (wiki "Convert OpenVZ to LXC";
pct(1), "Container Settings"): the archive restores as a container, but its resources and its
network are set anew, since LXC has no venet: every address becomes a ``netN`` veth interface on a
bridge, with a prefix length and (on net0) the gateway, which venet never needed. Units
(ctid.conf(5)): PHYSPAGES / SWAPPAGES are 4 KiB pages, "barrier:limit"; DISKSPACE is KiB,
"soft:hard"; CPULIMIT is percent of one CPU. Pure: the caller builds the target from the plan's
address (``MoveSpec.ips``) and the destination's network.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

from adapters.openvz.inventory import limit_of

#: OSTEMPLATE prefixes and the Proxmox ``ostype`` each is (pct(1) ``--ostype``).
OSTYPES = ("debian", "ubuntu", "centos", "fedora", "opensuse", "archlinux", "alpine", "gentoo",
           "almalinux", "rockylinux")


@dataclass(frozen=True)
class RestoreTarget:
    """Where and how the restored container lands."""

    vmid: int
    archive: str  #: the archive's volume id on a Proxmox storage, ``backup:backup/vzdump-...``
    storage: str  #: the storage its root disk goes to
    #: Its addresses in CIDR form, net0 first (a bridge needs the prefix venet never had).
    ips: tuple[str, ...] = ()
    gateway: str | None = None
    bridge: str = "vmbr0"
    extra: dict[str, str] = field(default_factory=dict)


def _mb_of_pages(value: str | None) -> int:
    return limit_of(value) * 4 // 1024


def _ostype(template: str) -> str:
    return next((name for name in OSTYPES if template.lower().startswith(name)), "unmanaged")


def _nets(ips: tuple[str, ...], gateway: str | None, bridge: str) -> dict[str, str]:
    nets = {}
    for index, cidr in enumerate(ips):
        iface = ipaddress.ip_interface(cidr)
        if "/" not in cidr:
            raise ValueError(f"{cidr}: a bridged interface needs the address with its prefix length")
        key = "ip6" if iface.version == 6 else "ip"
        value = f"name=eth{index},bridge={bridge},{key}={cidr}"
        if index == 0 and gateway:
            value += f",{'gw6' if iface.version == 6 else 'gw'}={gateway}"
        nets[f"net{index}"] = value
    return nets


def restore_params(conf: dict[str, str], target: RestoreTarget) -> dict[str, str | int]:
    """The body of ``POST /nodes/{node}/lxc`` restoring ``target.archive`` as this container."""
    disk_kib = limit_of(conf.get("DISKSPACE"))
    params: dict[str, str | int] = {
        "vmid": target.vmid, "ostemplate": target.archive, "restore": 1, "storage": target.storage,
        # OpenVZ files carry the host's uids as they are; an unprivileged container would shift them
        "unprivileged": 0,
        "ostype": _ostype(conf.get("OSTEMPLATE", "")),
        "onboot": int(conf.get("ONBOOT", "no").lower() == "yes"),
    }
    if memory := _mb_of_pages(conf.get("PHYSPAGES")):
        params["memory"] = memory
    if conf.get("SWAPPAGES"):
        params["swap"] = _mb_of_pages(conf.get("SWAPPAGES"))
    if disk_kib:
        params["rootfs"] = f"{target.storage}:{max(1, math.ceil(disk_kib / 2**20))}"
    if conf.get("CPUS", "").isdigit():
        params["cores"] = int(conf["CPUS"])
    if conf.get("CPULIMIT", "").isdigit() and int(conf["CPULIMIT"]) > 0:
        params["cpulimit"] = f"{int(conf['CPULIMIT']) / 100:g}"
    for key, name in (("HOSTNAME", "hostname"), ("NAMESERVER", "nameserver"),
                      ("SEARCHDOMAIN", "searchdomain")):
        if conf.get(key):
            params[name] = conf[key]
    return {**params, **_nets(target.ips, target.gateway, target.bridge), **target.extra}
