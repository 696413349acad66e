"""The vzdump archives of OpenVZ containers, as a backup host or a shared path keeps them.

    [openvz.backups] dir = "/backup/vz/{node}", host = {...} (or none: a path every node mounts)
        | one SSH command on the backup host (or on a live node): the archives with mtime and size
        v
    parse_listing: vzdump-openvz-CTID-YYYY_MM_DD-HH_MM_SS.(tar|tgz|tar.gz|tar.lzo|tar.zst)
        --> adapters.restore.Backup (taken at: the name's start time, in the host's zone)
    lost_containers: the dead node's containers no live node shows, read from the
        ``etc/vzdump/vps.conf`` their newest archive carries (the CT's config at backup time)

Why these names: vzdump (1.2, PVE/VZDump.pm exec_backup_task) names an archive
``vzdump-<vmtype>-<vmid>-<localtime %Y_%m_%d-%H_%M_%S>`` plus ``.tar`` or ``.tgz`` (``--compress``);
Proxmox VE's later vzdump writes ``.tar.gz``, ``.tar.lzo`` and ``.tar.zst``. The time is the
backup's *start*, in the node's local time: the data of the container is at least that old, so it
is the data age (RPO) ferry reports; the file's mtime (the end) caps it when the zone is wrong.
An unfinished archive is ``*.dat`` (renamed at the end) and a log is ``*.log``: neither matches.
The archive holds the private area with the config as ``./etc/vzdump/vps.conf`` (vzrestore moves
it to ``/etc/vz/conf/CTID.conf``), which is how a dead node's containers are known at all.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from adapters.base import Journal, JournalEntry, PermanentError, TransientError
from adapters.openvz import inventory
from adapters.openvz.settings import BackupLocation, OpenVZSettings
from adapters.openvz.ssh import Shell
from adapters.restore import Backup, newest_backups
from fleet.model import Container

#: The name ferry's SSH pool gives the backup host (``[openvz.backups] host``).
BACKUP_HOST = "backup-host"
ARCHIVE_NAME = re.compile(r"^vzdump-openvz-(\d+)-(\d{4})_(\d{2})_(\d{2})-(\d{2})_(\d{2})_(\d{2})"
                          r"\.(tar|tgz|tar\.gz|tar\.lzo|tar\.zst)$")
#: The host's UTC offset, then one line per archive: mtime (epoch s), size (bytes), name.
LIST_SCRIPT = ('date +%z; [ -d "$1" ] || exit 0; '
               "find \"$1\" -maxdepth 1 -type f -name 'vzdump-openvz-*' -printf '%T@ %s %f\\n'")
#: The config inside an archive (tar finds the compression itself).
CONF_SCRIPT = "tar -xO -f \"$1\" --wildcards '*etc/vzdump/vps.conf'"


def _ignore(entry: JournalEntry) -> None:
    return None


def with_backup_host(settings: OpenVZSettings) -> OpenVZSettings:
    """The settings whose node table also names the backup host, so one SSH pool reaches both."""
    location = settings.backups
    if location is None or location.host is None:
        return settings
    if BACKUP_HOST in settings.nodes:
        raise PermanentError(f"a node is named {BACKUP_HOST!r}, the name ferry gives the backup host")
    return settings.model_copy(update={"nodes": {**settings.nodes, BACKUP_HOST: location.host}})


def taken_at(match: re.Match[str], offset: str) -> float:
    """The epoch seconds of an archive name's local time, in the zone ``offset`` (``+0100``)."""
    sign = -1 if offset.startswith("-") else 1
    digits = offset.lstrip("+-")
    zone = timezone(sign * timedelta(hours=int(digits[:2] or 0), minutes=int(digits[2:4] or 0)))
    y, mo, d, h, mi, s = (int(g) for g in match.groups()[1:7])
    return datetime(y, mo, d, h, mi, s, tzinfo=zone).timestamp()


def parse_listing(text: str, directory: str, storage: str) -> list[Backup]:
    """LIST_SCRIPT's output as backups (files that are not vzdump OpenVZ archives are skipped)."""
    lines = text.strip().splitlines()
    offset = lines[0].strip() if lines and re.fullmatch(r"[+-]\d{4}", lines[0].strip()) else "+0000"
    out = []
    for line in lines[1:]:
        parts = line.split(" ", 2)
        if len(parts) != 3 or (m := ARCHIVE_NAME.match(parts[2])) is None:
            continue
        mtime, size = float(parts[0]), int(parts[1])
        out.append(Backup(m.group(1), f"{directory.rstrip('/')}/{parts[2]}", min(taken_at(m, offset), mtime),
                          size, storage))
    return out


class ArchiveStore:
    """The archives of ``[openvz.backups]``, read over SSH (module doc)."""

    def __init__(self, settings: OpenVZSettings, shell: Shell) -> None:
        if settings.backups is None:
            raise PermanentError("restore from backups: [openvz.backups] is not configured (the directory "
                                 "of the vzdump archives, and the host that keeps them)")
        self.settings, self.shell = settings, shell
        self.location: BackupLocation = settings.backups

    @property
    def storage(self) -> str:
        return self.location.host.host if self.location.host else "shared"

    def reader(self, avoid: str) -> str:
        """Where the archives are read: the backup host, else the first live node but ``avoid``."""
        if self.location.host is not None:
            return BACKUP_HOST
        for node in self.settings.nodes:
            if node != avoid and self.reachable(node):
                return node
        raise TransientError("no live node to read the backups directory from")

    def reachable(self, node: str, journal: Journal = _ignore) -> bool:
        try:
            return self.shell.run(node, ["true"], journal, check=False, timeout=30).ok
        except (TransientError, PermanentError):
            return False

    def archives(self, node: str, journal: Journal = _ignore) -> list[Backup]:
        """Every archive in ``node``'s backup directory."""
        directory = self.location.dir_of(node)
        res = self.shell.run(self.reader(node), ["sh", "-c", LIST_SCRIPT, "ferry", directory], journal)
        return parse_listing(res.out, directory, self.storage)

    def config_of(self, node: str, archive: str) -> dict[str, str]:
        """The container's config as the archive holds it (``etc/vzdump/vps.conf``)."""
        res = self.shell.run(self.reader(node), ["sh", "-c", CONF_SCRIPT, "ferry", archive], _ignore, check=False)
        if not res.ok:
            raise PermanentError(f"cannot read the config inside {archive}: {res.err.strip()[-200:]}")
        return inventory.parse_conf(res.out)

    def lost_containers(self, node: str, known: set[str]) -> list[Container]:
        """The containers of the dead ``node`` that the inventory cannot show (not in ``known``):
        every CT with an archive in its directory, described by its newest archive's config."""
        newest = newest_backups([b for b in self.archives(node) if b.ct not in known])
        return [inventory.container_from(node, {"ctid": ct, "status": "running",
                                                "diskspace": {"usage": b.bytes // 1024}},
                                         self.config_of(node, b.archive))
                for ct, b in sorted(newest.items())]
