#!/usr/bin/python3
"""Test double of the OpenVZ tools: ``vzctl``, ``vzlist``, ``vzmigrate``, ``vzdump``.

    node's /usr/local/sbin/<tool> --> python3 vzdouble.py <tool> ARGS --> main()
        vzctl             -> vzdouble_ctl.py   (start/stop/set/destroy/status/exec/chkpnt)
        vzlist            -> vzdouble_list.py  (text and -j output)
        vzmigrate, vzdump -> vzdouble_move.py
    this module: what they share (configs, run state, the per-CT lock, addresses)

Installed on every lab node as wrappers named after the tools, which pass the tool's name. It keeps
the real tools' interfaces, taken from the vzctl sources (github.com/kolyshkin/vzctl):

- ``man/vzctl.8.in``: ``vzctl [flags] CMD CTID [options]``; ``status`` prints
  ``CTID <id> exist|deleted mounted|unmounted running|down [suspended]``; exit 9 = locked by
  another vzctl, 14 = no ctid.conf, 31 = not running, 32 = already running, 43 = private area not
  found, 46 = not enough disk space, 21 = bad parameter value.
- ``src/vzlist.c``: ``-a -S -H -t -j -o f,f -1 [CTID...]``; fixed-width columns, ``-`` for empty;
  ``-j`` prints strings *unescaped* (the real tool does no JSON escaping), ubc/diskspace as
  objects; exit 1 if a CTID given does not exist.
- ``bin/vzmigrate.in``: ``vzmigrate [-r yes|no] [--keep-dst] [--live] [--check-only]
  [--rsync=OPTS] [--ssh=OPTS] DEST CTID``; lock ``/vz/lock/CTID.lck`` (exit 20), dest exists (9),
  IP in use (12), CPT version (17), copy (6), start (7); default ``-r yes`` DESTROYS the source;
  ``-r no`` renames ``CTID.conf`` to ``CTID.conf.migrated``. rsync options ``-aHAX --delete
  --numeric-ids``; ``--keep-dst`` keeps a partial destination area after an error.
- vzdump(1) (vzdump 1.2): ``vzdump --compress --dumpdir DIR [--stop|--suspend] CTID`` writes
  ``vzdump-openvz-CTID-YYYY_MM_DD-HH_MM_SS.tgz`` holding the private area and
  ``etc/vzdump/vps.conf``; ``vzdump --restore FILE CTID``.

A container is a real process tree: ``unshare --pid --mount --uts --fork`` + ``chroot`` into its
private area (busybox inside), its IPs as /32 addresses on the node's NIC (venet style).
Live migration is emulated (CRIU does not work here): freeze with SIGSTOP, rsync, start on the
destination. ``/etc/vz/lab.conf`` ``REFUSE_LIVE=yes`` makes ``--live`` fail like a CPT version
mismatch (exit 17), to exercise the fallback.
"""

import os
import re
import subprocess
import sys

CONF_DIR = "/etc/vz/conf"
LOCK_DIR = "/vz/lock"
RUN_DIR = "/var/lib/vzlab/run"
RSYNC_OPTS = ["-aHAX", "--delete", "--numeric-ids"]
SSH = ["ssh", "-o", "BatchMode=yes"]


def die(code, msg):
    print(msg, file=sys.stderr)
    sys.exit(code)


def read_conf(path):
    conf = {}
    with open(path) as fh:
        for line in fh:
            m = re.match(r'^\s*([A-Z_0-9]+)="?(.*?)"?\s*$', line)
            if m and not line.lstrip().startswith("#"):
                conf[m.group(1)] = m.group(2)
    return conf


def write_conf_keys(path, updates):
    lines = open(path).read().splitlines() if os.path.exists(path) else []
    out, seen = [], set()
    for line in lines:
        m = re.match(r"^\s*([A-Z_0-9]+)=", line)
        if m and m.group(1) in updates:
            seen.add(m.group(1))
            out.append(f'{m.group(1)}="{updates[m.group(1)]}"')
        else:
            out.append(line)
    out += [f'{k}="{v}"' for k, v in updates.items() if k not in seen]
    with open(path + ".tmp", "w") as fh:
        fh.write("\n".join(out) + "\n")
    os.replace(path + ".tmp", path)


def lab_conf():
    return read_conf("/etc/vz/lab.conf") if os.path.exists("/etc/vz/lab.conf") else {}


def conf_path(ctid):
    return f"{CONF_DIR}/{ctid}.conf"


def private_of(ctid, conf=None):
    conf = conf if conf is not None else read_conf(conf_path(ctid))
    return conf.get("VE_PRIVATE", "/var/lib/vz/private/$VEID").replace("$VEID", str(ctid))


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def init_pid(ctid):
    try:
        pid = int(open(f"{RUN_DIR}/{ctid}.pid").read())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def state_of(ctid):
    pid = init_pid(ctid)
    suspended = pid is not None and os.path.exists(f"{RUN_DIR}/{ctid}.suspended")
    return os.path.exists(conf_path(ctid)), pid, suspended


class Lock:
    """vzctl's per-CT lock: ``/vz/lock/CTID.lck`` holding the owner's PID (lib/lock.c)."""

    def __init__(self, ctid, code=9):
        self.path, self.code = f"{LOCK_DIR}/{ctid}.lck", code

    def __enter__(self):
        os.makedirs(LOCK_DIR, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, f"{os.getpid()}\n".encode())
                os.close(fd)
                return self
            except FileExistsError:
                try:
                    owner = int(open(self.path).read().strip() or 0)
                except (OSError, ValueError):
                    owner = 0
                if owner and alive(owner):
                    die(self.code, f"Container already locked by PID {owner}")
                os.unlink(self.path)  # stale lock left by a dead process
        die(self.code, "Unable to lock container")

    def __exit__(self, *exc):
        try:
            os.unlink(self.path)
        except OSError:
            pass


def iface():
    return lab_conf().get("IFACE", "eth0")


def ip_addrs(ctid):
    return read_conf(conf_path(ctid)).get("IP_ADDRESS", "").split()


def net(action, ips):
    for ip in ips:
        subprocess.run(["ip", "addr", action, f"{ip.split('/')[0]}/32", "dev", iface()],
                       capture_output=True)


def announce(ips):
    """Like vzctl's arpsend: tell the segment that the addresses live here now."""
    for ip in ips:
        subprocess.Popen(["arping", "-q", "-U", "-c", "1", "-I", iface(), ip.split("/")[0]],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)


def main():
    """``argv[1]`` names the tool (the lab's wrappers pass it); each lives in its own module."""
    tool, args = sys.argv[1], sys.argv[2:]
    if tool == "vzrestore":  # vzrestore ARCHIVE CTID (vzdump 1.2), installed only where a test puts it
        import vzdouble_move

        return vzdouble_move.restore(*args)
    if tool in ("vzmigrate", "vzdump"):
        import vzdouble_move

        return vzdouble_move.main(tool, args)
    if tool == "vzlist":
        import vzdouble_list

        return vzdouble_list.vzlist(args)
    import vzdouble_ctl

    return vzdouble_ctl.vzctl(args)


if __name__ == "__main__":
    main()
