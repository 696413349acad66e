"""Copy a container's private area node to node: rsync rounds, or a vzdump archive.

    presync:  [mark] rsync round 1 (all) -> [mark] round 2 (delta) -> ... while the delta shrinks
              -> list the destination's paths (delta.py)
    cutover:  final pass over what changed since the last mark (delta.py), container stopped;
              full rsync when no mark/list exists
    dump:     vzdump --compress --dumpdir D CT  ->  rsync archive  ->  vzdump --restore F DCT

rsync runs *on the source node* and pushes to the destination over the nodes' own SSH keys
(vzmigrate does the same; checked in pre-flight). Its ssh shares one master connection per
destination (ssh_config(5) ControlMaster/ControlPersist, like vzmigrate's ``--ssh-mux``), so the
final rsync inside the downtime does not pay a new SSH handshake (~0.3 s measured in the lab). Exit statuses (rsync(1)): 0 ok, 24 "some files
vanished" (normal for a running container, vzmigrate ignores it too); a full destination
("No space left on device") is permanent; a broken connection (10, 12, 30, 35, 255) transient.

The move's bandwidth cap (MoveSpec.bwlimit_kib, the node's budget over its concurrent moves)
goes to every rsync of the move as ``--bwlimit=KiB``: rsync(1) reads a RATE without suffix as
units of 1024 bytes per second of "data sent over the socket" (the sender limits itself, here the
source node), and 0 means no limit, so a cap is never rounded down to 0. It comes after
``rsync_options``, so the budget wins over a ``--bwlimit`` there (the last one counts).
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable

from adapters.base import Journal, PermanentError, TransientError
from adapters.openvz.settings import OpenVZSettings
from adapters.openvz.ssh import Result, Shell

_TRANSIENT = {5, 10, 12, 30, 35, 255}


def ssh_command(settings: OpenVZSettings, target: str, *, shared: bool = False) -> str:
    """The ``ssh`` a node uses to reach ``target``; ``shared`` reuses a master connection whose
    socket lives in ferry's state directory on that node (kept 120 s after its last use)."""
    port = settings.nodes[target].port
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", str(port)]
    if shared:
        argv[1:1] = ["-o", "ControlMaster=auto", "-o", f"ControlPath={settings.state_dir}/ssh-%C",
                     "-o", "ControlPersist=120"]
    return shlex.join(argv)


def remote_path(settings: OpenVZSettings, target: str, path: str) -> str:
    access = settings.nodes[target]
    return f"{access.user}@{access.host}:{path}"


def bwlimit(kib: int | None) -> list[str]:
    """rsync's ``--bwlimit`` for a cap in KiB/s; nothing for no cap."""
    return [f"--bwlimit={kib}"] if kib else []


def check_rsync(res: Result, source: str, target: str, dst: str) -> None:
    """Raise the error an rsync exit status means (module doc); 0 and 24 pass."""
    if res.status in (0, 24):
        return
    text = (res.err or res.out).strip()
    if "No space left on device" in text or "Disk quota exceeded" in text:
        raise PermanentError(f"no space left on {target} for {dst}: free space there, or "
                             "choose another destination")
    if res.status in _TRANSIENT:
        raise TransientError(f"rsync {source} -> {target} broke (exit {res.status}): {text[-200:]}")
    raise PermanentError(f"rsync {source} -> {target} failed (exit {res.status}): {text[-300:]}")


def transferred(stats: str) -> int:
    """Bytes of file data sent, from rsync's ``--stats`` output."""
    m = re.search(r"Total transferred file size: ([\d,.]+)", stats)
    return int(re.sub(r"[,.]", "", m.group(1))) if m else 0


def rsync_once(shell: Shell, settings: OpenVZSettings, source: str, target: str, src: str,
               dst: str, journal: Journal, *, bwlimit_kib: int | None = None) -> int:
    """One rsync pass ``src/`` -> ``target:dst/``; returns the bytes of file data sent."""
    argv = (["rsync", *settings.rsync_options, *bwlimit(bwlimit_kib), "--stats", "--mkpath", "-e",
             ssh_command(settings, target, shared=True), f"{src}/",
             remote_path(settings, target, f"{dst}/")])
    res = shell.run(source, argv, journal, check=False)
    check_rsync(res, source, target, dst)
    return transferred(res.out)


def presync(shell: Shell, settings: OpenVZSettings, source: str, target: str, src: str, dst: str,
            journal: Journal, figures: dict[str, float],
            before_round: Callable[[], None] = lambda: None, *, bwlimit_kib: int | None = None) -> None:
    """Copy while the container runs; repeat while each round sends less than half the last.
    ``before_round`` runs before each round (the change mark of delta.py)."""
    previous = None
    for round_no in range(1, settings.presync_max_rounds + 1):
        before_round()
        started = time.monotonic()
        sent = rsync_once(shell, settings, source, target, src, dst, journal, bwlimit_kib=bwlimit_kib)
        figures[f"presync_round{round_no}_bytes"] = float(sent)
        # "bytes" / "transfer_s": what the engine learns link throughput from (service/saga.py)
        figures["bytes"] = figures.get("bytes", 0.0) + sent
        figures["transfer_s"] = figures.get("transfer_s", 0.0) + time.monotonic() - started
        if sent < 1 << 20 or (previous is not None and sent > previous / 2):
            break
        previous = sent


def dump_and_restore(shell: Shell, settings: OpenVZSettings, source: str, target: str, ct: str,
                     dest_ct: str, journal: Journal, *, bwlimit_kib: int | None = None) -> None:
    """vzdump --compress on the source, copy the archive, vzdump --restore on the destination."""
    out = shell.run(source, ["vzdump", "--compress", "--dumpdir", settings.dump_dir, ct], journal).out
    m = re.search(r"creating archive '([^']+)'", out)
    if not m:
        raise PermanentError(f"vzdump on {source} did not say where it wrote the archive: {out[-200:]}")
    archive = m.group(1)
    argv = ["rsync", "-a", *bwlimit(bwlimit_kib), "--mkpath", "-e", ssh_command(settings, target), archive,
            remote_path(settings, target, f"{settings.dump_dir}/")]
    res = shell.run(source, argv, journal, check=False)
    if res.status != 0:
        raise (TransientError if res.status in _TRANSIENT else PermanentError)(
            f"copying {archive} to {target} failed (exit {res.status}): {res.err.strip()[-200:]}")
    remote_archive = f"{settings.dump_dir}/{archive.rsplit('/', 1)[-1]}"
    shell.run(target, ["vzdump", "--restore", remote_archive, dest_ct], journal)
    shell.run(target, ["rm", "-f", remote_archive], journal, check=False)
