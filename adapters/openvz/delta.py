"""The final copy of a restart move limited to what changed since the last pre-copy round.

A full ``rsync`` inside the downtime walks the whole private area on both nodes (20,000 files:
~0.3 s) to find the few files the container wrote meanwhile. The source node's kernel already
knows them: every write, chmod, chown, rename, link or unlink sets the inode's *ctime*, which
user space cannot set back (stat(2), inode(7)). So::

    presync, before each round:  touch -d @(now - 2 s) <state>/sync.mark        (source node)
    presync, after the last one:  find DST -printf '%P\\0' | sort -z > <state>/dest.list
                                  (what the destination holds now, listed from the source node)
    cutover, source stopped:      find SRC -printf '%P\\0' (sorted: src.list)
                                           -cnewer sync.mark  -> changed paths
                                  comm src.list dest.list     -> new paths (e.g. a renamed
                                                                 directory's untouched content)
                                                              -> gone paths (deleted, renamed away)
                                  rsync -I --from0 --files-from=delta.list --delete-missing-args

When no directory changed since the mark, no name was added, removed or renamed (each of
those changes its directory's ctime), so the path lists are neither built nor compared: the
common case (a container rewriting some files) costs one ``find`` with a stat per file.
``changed`` alone would miss the contents of a directory renamed after the mark (their ctime does
not change); the path-list diff against what the destination really holds catches them, and
catches every deletion, including files created and deleted during the last round. ``-I`` sends
each listed file even when its size and mtime look unchanged (an application may set mtime back;
it cannot set ctime). The mark is set 2 s in the past so that a change in the same clock tick as
the mark (file timestamps come from a coarse clock) still counts as newer. ``-H`` stays correct:
a new link to an old inode changes that inode's ctime, so all its names are listed together.

Lists are NUL-separated end to end (``find -printf '%P\\0'``, ``sort -z``, ``comm -z``,
``rsync --from0``): any byte but NUL and ``/`` may appear in a file name. When the mark or the
destination list is missing (no pre-copy, a crash between the round and the listing) or the
listing fails (``comm -z`` needs GNU coreutils >= 8.25), :func:`final_pass` returns False and the
caller falls back to the full rsync. rsync(1) documents ``--files-from`` (implies ``--relative``
and ``--dirs``, not ``--recursive``), ``--from0``, ``--ignore-times``, ``--delete-missing-args``.
"""

from __future__ import annotations

import shlex

from adapters.base import Journal, PermanentError
from adapters.openvz.settings import OpenVZSettings
from adapters.openvz.ssh import Shell
from adapters.openvz.transfer import bwlimit, check_rsync, remote_path, ssh_command, transferred

MARK, DEST_LIST = "sync.mark", "dest.list"
#: Exit status of the listing part of the final pass: "no delta possible, copy everything".
NO_DELTA = 97
#: Exit status of the final pass when its prelude (the cutover's gate and stop) failed.
PRELUDE_FAILED = 96
#: Set the mark (2 s back) and forget the destination list of an earlier round.
_MARK = ('mkdir -p "$1" && touch -d "@$(( $(date +%s) - 2 ))" "$1/' + MARK + '" && '
         'rm -f "$1/' + DEST_LIST + '"')
# The listing: writes <state>/delta.list from the marks (module doc); cwd is the source area.
# Every name added, removed or renamed changes its directory's ctime: when no directory changed
# since the mark, the names are those the destination holds and the path-list diff is skipped.
_LIST = (
    '{ find . -maxdepth 0 -cnewer "$st/' + MARK + '" -printf ".\\0" && '
    'find . -mindepth 1 -cnewer "$st/' + MARK + '" -printf "%P\\0" \\( -type d '
    '-fprintf "$st/dirs" "%P\\0" \\); } > "$st/delta.list" && '
    'if [ -s "$st/dirs" ] || [ "$(head -c 1 "$st/delta.list")" = . ]; then '
    'find . -mindepth 1 -printf "%P\\0" > "$st/src.raw" && sort -z "$st/src.raw" > "$st/src.list" '
    '&& comm -z -13 "$st/' + DEST_LIST + '" "$st/src.list" >> "$st/delta.list" && '
    'comm -z -23 "$st/' + DEST_LIST + '" "$st/src.list" >> "$st/delta.list"; fi')
# $1 state dir, $2 source dir, then the rsync argv (reading the list on stdin). rsync starts at
# once and connects (ssh, remote rsync, protocol handshake) while the left side runs the prelude
# (gate, stop) and the listing; it reads the list only when they are done. The left side's
# failures reach the exit status through <state>/final.rc (sh has no pipefail).
_FINAL = (
    'st=$1 src=$2; shift 2; rm -f "$st/final.rc"; export LC_ALL=C; '
    '{ { PRELUDE; } >&2 || { echo ' + str(PRELUDE_FAILED) + ' > "$st/final.rc"; exit; }; '
    '{ [ -f "$st/' + MARK + '" ] && [ -f "$st/' + DEST_LIST + '" ] && cd "$src" && ' + _LIST
    + '; } || { echo ' + str(NO_DELTA) + ' > "$st/final.rc"; exit; }; cat "$st/delta.list"; } '
    '| "$@"; rc=$?; [ -s "$st/final.rc" ] && exit "$(cat "$st/final.rc")"; exit $rc')


def mark(shell: Shell, node: str, state: str, journal: Journal) -> None:
    """Before a pre-copy round: what changes from now on, the final pass sends."""
    shell.run(node, ["sh", "-c", _MARK, "ferry", state], journal)


def list_destination(shell: Shell, settings: OpenVZSettings, source: str, target: str,
                     state: str, dst: str, journal: Journal) -> None:
    """After the last round: record on the source node every path the destination holds."""
    find = shlex.join(["find", dst, "-mindepth", "1", "-printf", "%P\\0"])
    access = settings.nodes[target]
    script = (f'{ssh_command(settings, target, shared=True)} '
              f'{shlex.quote(f"{access.user}@{access.host}")} {shlex.quote(find)} '
              '> "$1/dest.raw" && LC_ALL=C sort -z "$1/dest.raw" > "$1/dest.tmp" && '
              f'mv "$1/dest.tmp" "$1/{DEST_LIST}"; s=$?; rm -f "$1/dest.raw"; exit $s')
    shell.run(source, ["sh", "-c", script, "ferry", state], journal)


def final_pass(shell: Shell, settings: OpenVZSettings, source: str, target: str, state: str,
               src: str, dst: str, journal: Journal, prelude: str = "", *,
               bwlimit_kib: int | None = None) -> int | None:
    """Send only what changed since the mark; None when no delta is possible. Returns the bytes
    of file data sent. ``prelude`` (shell text, already quoted) runs first in the same call:
    the cutover gates and stops the container there, saving SSH round trips in the downtime."""
    rsync = ["rsync", *settings.rsync_options, *bwlimit(bwlimit_kib), "--stats", "--ignore-times", "--from0",
             "--files-from=-", "--delete-missing-args", "-e",
             ssh_command(settings, target, shared=True), f"{src}/",
             remote_path(settings, target, f"{dst}/")]
    script = _FINAL.replace("PRELUDE", prelude or "true")
    res = shell.run(source, ["sh", "-c", script, "ferry", state, src, *rsync], journal,
                    check=False)
    if res.status == PRELUDE_FAILED:
        raise PermanentError(f"{source}: the switch before the final copy (gate, stop) failed: "
                             f"{res.err.strip()[-300:] or 'no message'}")
    if res.status == NO_DELTA:
        return None
    check_rsync(res, source, target, dst)
    return transferred(res.out)
