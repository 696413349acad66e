"""The final pass over what changed (adapters/openvz/delta.py) leaves the destination equal to the
source: every change made after the change mark, including deletions, renames of files and of
whole directories, new hard links, permission changes, same-size rewrites with the old mtime put
back, and files that were created during the last round and deleted before the cutover.

Trees are compared from the root namespace, file by file (type, mode, owner, size, content,
mtime, link target, hard-link groups), never through ferry.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from adapters.base import PermanentError
from adapters.openvz import create_backend, delta, transfer
from tests.doubles.lab.containers import make_container
from tests.doubles.lab.netlab import Lab, missing_binaries
from tests.integration.conformance.harness import MoveOrder, run_move

pytestmark = [pytest.mark.lab]

if os.geteuid() != 0:
    pytest.skip("the OpenVZ lab needs root (network and mount namespaces)", allow_module_level=True)
if missing_binaries():
    pytest.skip(f"the OpenVZ lab needs: {', '.join(missing_binaries())}", allow_module_level=True)

STATE = "/var/lib/ferry/delta-test"


@pytest.fixture(scope="module")
def lab():
    with Lab().up(2) as lab:
        yield lab


@pytest.fixture(scope="module")
def backend(lab):
    be = create_backend(lab.settings(retention_hours=1))
    yield be
    be.close()


def tree(root: Path) -> dict:
    """Everything rsync -aHAX promises to keep, per relative path, plus hard-link groups."""
    out, inodes = {}, {}
    for path in sorted(root.rglob("*")) + [root]:
        st = path.lstat()
        rel = str(path.relative_to(root))
        kind = "l" if path.is_symlink() else "d" if path.is_dir() else "f"
        entry = (kind, st.st_mode, st.st_uid, st.st_gid)
        if kind == "f":
            entry += (st.st_size, hashlib.sha1(path.read_bytes()).hexdigest(), int(st.st_mtime))
            inodes.setdefault(st.st_ino, []).append(rel)
        elif kind == "l":
            entry += (os.readlink(path),)
        out[rel] = entry
    out["<hard links>"] = sorted(sorted(names) for names in inodes.values() if len(names) > 1)
    return out


def mutate_after_round(src: Path) -> None:
    """What a running container might do between the last pre-copy round and its stop."""
    (src / "data/d0/f1").unlink()
    (src / "data/d0/f2").rename(src / "data/d1/f2-moved")
    (src / "data/d1").rename(src / "data/d1-renamed")           # untouched content, new paths
    os.link(src / "data/d0/f3", src / "data/d0/f3-link")         # a new name for an old inode
    os.chmod(src / "data/d0/f4", 0o600)
    old = (src / "data/d0/f5").stat()
    (src / "data/d0/f5").write_bytes(b"x" * old.st_size)           # same size, mtime put back
    os.utime(src / "data/d0/f5", ns=(old.st_atime_ns, old.st_mtime_ns))
    (src / "etc/during-round").unlink()                          # created in the round, gone now
    (src / "data/new\nline").write_text("odd name")
    (src / "data/empty").mkdir()
    (src / "top-level-new").write_text("the area's root changed too")
    os.chmod(src, 0o750)
    (src / "data/link").symlink_to("d0/f6")
    for leaf in (src / "www/deep").rglob("*"):
        if leaf.is_file():
            leaf.unlink()
    for sub in sorted((src / "www/deep").rglob("*"), reverse=True):
        sub.rmdir()
    (src / "www/deep").rmdir()


def test_final_pass_makes_the_destination_equal_the_source(lab, backend):
    n1, n2 = lab.nodes["n1"], lab.nodes["n2"]
    src = make_container(n1, "601", None, files=1200, file_kb=2)
    (src / "www/deep/a/b").mkdir(parents=True)
    (src / "www/deep/a/b/c").write_text("deep")
    os.link(src / "data/d0/f7", src / "data/d0/f7-old-link")
    shell, settings, journal = backend.shell, backend.settings, []
    paths = ("n1", "n2", "/var/lib/vz/private/601", "/var/lib/vz/private/601")
    transfer.rsync_once(shell, settings, *paths, journal.append)       # round 1
    # The mark is set 2 s back from the node's clock in whole seconds (up to 3 s back): files
    # written before round 1 must be older than it, so wait more than 3 s.
    time.sleep(3.2)
    delta.mark(shell, "n1", STATE, journal.append)                      # round 2 starts
    (src / "etc/during-round").write_text("created after the mark, copied by round 2")
    (src / "data/d0/f8").write_bytes(b"changed during the round")
    transfer.rsync_once(shell, settings, *paths, journal.append)
    delta.list_destination(shell, settings, "n1", "n2", STATE, paths[3], journal.append)
    mutate_after_round(src)
    sent = delta.final_pass(shell, settings, "n1", "n2", STATE, *paths[2:], journal.append)
    dst = n2.path("var_lib_vz/private") / "601"
    assert tree(dst) == tree(src)
    # the changes (mostly the renamed directory: 200 files of 2 KiB), not the 4.4 MB area
    assert sent is not None and sent < 600_000, sent
    listed = n1.run(f"tr '\\0' '\\n' < {STATE}/delta.list").splitlines()
    assert "data/d0/f100" not in listed and "bin/busybox" not in listed
    assert len(listed) < 450, len(listed)  # d1's 200 files twice (new names, gone names) + ~30
    # nothing to build on (no mark): the caller is told to copy everything
    n1.run(f"rm -f {STATE}/{delta.MARK}")
    assert delta.final_pass(shell, settings, "n1", "n2", STATE, *paths[2:], journal.append) is None
    # the switch in front of the copy failed (here: stopping a container that does not run)
    with pytest.raises(PermanentError, match="switch before the final copy.*not running"):
        delta.final_pass(shell, settings, "n1", "n2", STATE, *paths[2:], journal.append,
                         prelude="vzctl stop 601")
    n1.run(f"rm -rf {STATE} /var/lib/vz/private/601 /etc/vz/conf/601.conf")
    n2.run("rm -rf /var/lib/vz/private/601")


def test_restart_move_sends_only_the_delta(lab, backend, tmp_path):
    n1, n2 = lab.nodes["n1"], lab.nodes["n2"]
    src = make_container(n1, "602", "10.77.0.62", files=2000, file_kb=8, writer=True)  # 16 MB
    n1.run("vzctl start 602")
    time.sleep(3.2)  # older than the mark (2 s back, in whole seconds): only the writer counts
    out = run_move(backend, MoveOrder("602", "n1", "n2"), tmp_path)
    assert out.state == "succeeded", out.message
    n2.run("vzctl stop 602")
    finals = [e.what for e in out.journal if isinstance(e.what, list) and "--files-from" in
              " ".join(e.what)]
    # the writer's 40 files of 64 KiB, rewritten every 2 s, not the 16 MB area
    assert len(finals) == 1 and out.figures["final_bytes"] < 4 << 20, out.figures
    dst = n2.path("var_lib_vz/private") / "602"
    before, after = tree(src), tree(dst)
    # the destination container ran: only its writer's files (and their directory) may differ
    moving = {k for k in before.keys() | after.keys() if k.startswith("data/w") or k == "data"}
    assert {k: v for k, v in before.items() if k not in moving} == \
        {k: v for k, v in after.items() if k not in moving}
    n2.run("vzctl destroy 602")
    n1.run("rm -rf /var/lib/vz/private/602 /etc/vz/conf/602.conf.migrated /var/lib/ferry/602")
