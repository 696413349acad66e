#!/usr/bin/python3
"""Test double of the OpenVZ tools: ``vzctl``, ``vzlist``, ``vzmigrate``, ``vzdump`` in one script.

Installed on every lab node as symlinks named after the tools; ``argv[0]`` picks the tool. It keeps
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
import shutil
import signal
import subprocess
import sys
import time

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


def ct_start(ctid, quiet=False):
    exists, pid, _ = state_of(ctid)
    if not exists:
        die(14, f"Container config file does not exist: {conf_path(ctid)}")
    if pid:
        die(32, "Container is already running")
    conf = read_conf(conf_path(ctid))
    private = private_of(ctid, conf)
    if not os.path.isfile(f"{private}/sbin/init"):
        die(43, f"Container private area {private} does not exist")
    ips = conf.get("IP_ADDRESS", "").split()
    net("add", ips)
    os.makedirs(RUN_DIR, exist_ok=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "IPS": " ".join(i.split("/")[0] for i in ips),
           "HOSTNAME": conf.get("HOSTNAME", "")}
    proc = subprocess.Popen(
        ["unshare", "--pid", "--mount", "--uts", "--fork", "--kill-child",
         "chroot", private, "/bin/busybox", "sh", "/sbin/init"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    with open(f"{RUN_DIR}/{ctid}.pid", "w") as fh:
        fh.write(str(proc.pid))
    announce(ips)
    if not quiet:
        print("Container start in progress...")


def ct_stop(ctid, quiet=False):
    _, pid, _ = state_of(ctid)
    if not pid:
        die(31, "Unable to stop container: container is not running")
    try:
        os.killpg(pid, signal.SIGCONT)
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 3
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.01)
    for f in (f"{RUN_DIR}/{ctid}.pid", f"{RUN_DIR}/{ctid}.suspended"):
        if os.path.exists(f):
            os.unlink(f)
    net("del", ip_addrs(ctid))
    if not quiet:
        print("Container was stopped")


def ct_set(ctid, opts):
    if not os.path.exists(conf_path(ctid)):
        die(14, f"Container config file does not exist: {conf_path(ctid)}")
    conf = read_conf(conf_path(ctid))
    ips = conf.get("IP_ADDRESS", "").split()
    updates, running = {}, init_pid(ctid) is not None
    i = 0
    while i < len(opts):
        opt = opts[i]
        if opt in ("--save", "--force"):
            i += 1
            continue
        if i + 1 >= len(opts):
            die(20, f"Invalid command line parameter: {opt}")
        val = opts[i + 1]
        if opt == "--ipadd":
            if not re.match(r"^[0-9a-fA-F.:]+(/\d+)?$", val):
                die(71, f"Incorrect IP address format: {val}")
            ips.append(val)
            if running:
                net("add", [val])
                announce([val])
        elif opt == "--ipdel":
            gone = list(ips) if val == "all" else [val]
            ips = [] if val == "all" else [x for x in ips if x != val]
            if running:
                net("del", gone)
        elif opt in ("--hostname", "--name", "--description", "--private", "--root",
                     "--onboot", "--cpus", "--diskspace"):
            key = {"--private": "VE_PRIVATE", "--root": "VE_ROOT"}.get(opt, opt[2:].upper())
            updates[key] = val
        else:
            die(20, f"Invalid command line parameter: {opt}")
        i += 2
    updates["IP_ADDRESS"] = " ".join(ips)
    write_conf_keys(conf_path(ctid), updates)


def ct_destroy(ctid):
    exists, pid, _ = state_of(ctid)
    if pid:
        die(32, "Container is currently running. Stop it first.")
    if not exists:
        print("Container does not exist")
        return
    shutil.rmtree(private_of(ctid), ignore_errors=True)
    os.replace(conf_path(ctid), conf_path(ctid) + ".destroyed")
    print("Container private area was destroyed")


def vzctl(args):
    while args and args[0] in ("--quiet", "--verbose", "--skiplock"):
        args = args[1:]
    if len(args) < 2:
        die(20, "Invalid command line: vzctl CMD CTID")
    cmd, ctid, rest = args[0], args[1], args[2:]
    if not ctid.isdigit():
        die(21, f"Invalid CTID: {ctid}")
    if cmd == "status":
        exists, pid, suspended = state_of(ctid)
        words = ["exist" if exists else "deleted", "mounted" if pid else "unmounted",
                 "running" if pid else "down"] + (["suspended"] if suspended else [])
        print(f"CTID {ctid} " + " ".join(words))
        return
    if cmd == "exec":  # same network namespace as the node: run in the node's context
        sys.exit(subprocess.run(rest).returncode if init_pid(ctid) else 31)
    handlers = {"start": lambda: ct_start(ctid), "stop": lambda: ct_stop(ctid),
                "set": lambda: ct_set(ctid, rest), "destroy": lambda: ct_destroy(ctid),
                "delete": lambda: ct_destroy(ctid), "chkpnt": lambda: chkpnt(ctid, rest)}
    if cmd not in handlers:
        die(20, f"Invalid command: {cmd}")
    with Lock(ctid):
        handlers[cmd]()


def chkpnt(ctid, opts):
    pid = init_pid(ctid)
    if not pid:
        die(31, "Container is not running")
    if "--suspend" in opts:
        os.killpg(pid, signal.SIGSTOP)
        open(f"{RUN_DIR}/{ctid}.suspended", "w").close()
    elif "--resume" in opts:
        os.killpg(pid, signal.SIGCONT)
        os.unlink(f"{RUN_DIR}/{ctid}.suspended")
    else:
        die(16, "Checkpointing is not supported by this kernel")


# ---------------------------------------------------------------- vzlist

FIELD_HDR = {"ctid": ("CTID", 10), "hostname": ("HOSTNAME", -32), "name": ("NAME", -32),
             "status": ("STATUS", -9), "ip": ("IP_ADDR", -15), "private": ("PRIVATE", -32),
             "cpus": ("CPUS", 5), "numproc": ("NPROC", 10), "physpages": ("PHYSP", 10),
             "swappages": ("SWAPP", 10), "diskspace": ("DSPACE", 10)}


def du_kib(path):
    out = subprocess.run(["du", "-sk", path], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else 0


def ct_record(ctid):
    conf = read_conf(conf_path(ctid))
    pid = init_pid(ctid)
    def pair(key):
        parts = conf.get(key, "0:0").split(":")
        return int(parts[0]), int(parts[-1])
    phys, swap, dspace = pair("PHYSPAGES"), pair("SWAPPAGES"), pair("DISKSPACE")
    held = 0
    if pid:
        for p in os.listdir("/proc"):
            if p.isdigit() and os.path.exists(f"/proc/{p}/status"):
                try:
                    if os.getpgid(int(p)) == pid:
                        held += int(open(f"/proc/{p}/statm").read().split()[1])
                except (OSError, ValueError):
                    pass
    return {"ctid": int(ctid), "hostname": conf.get("HOSTNAME") or None,
            "name": conf.get("NAME") or None, "status": "running" if pid else "stopped",
            "ip": conf.get("IP_ADDRESS", "").split(), "private": private_of(ctid, conf),
            "cpus": int(conf.get("CPUS", "0") or 0), "numproc": {"held": 1 if pid else 0},
            "physpages": {"held": held, "barrier": phys[0], "limit": phys[1]},
            "swappages": {"held": 0, "barrier": swap[0], "limit": swap[1]},
            "diskspace": {"usage": du_kib(private_of(ctid, conf)), "softlimit": dspace[0],
                          "hardlimit": dspace[1]}}


def text_cell(rec, field, last):
    val = rec[field]
    if isinstance(val, dict):
        val = val.get("held", val.get("usage"))
    if isinstance(val, list):
        val = " ".join(val) if last else (val[0] if val else None)
    s = "-" if val in (None, "") else str(val)
    width = FIELD_HDR[field][1]
    return s.rjust(width) if width > 0 else (s if last else s.ljust(-width)[: -width])


def json_value(val):
    if val is None:
        return "null"
    if isinstance(val, str):
        return f'"{val}"'  # unescaped, like print_json_str() in vzlist.c
    if isinstance(val, list):
        return "[" + ", ".join(f'"{v}"' for v in val) + "]"
    if isinstance(val, dict):
        return "{" + ", ".join(f'"{k}": {v}' for k, v in val.items()) + "}"
    return str(val)


def vzlist(args):
    header = True
    show_all, as_json, fields, ids = False, False, None, []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-a", "--all"):
            show_all = True
        elif a in ("-H", "--no-header"):
            header = False
        elif a in ("-t", "--no-trim"):
            pass
        elif a in ("-j", "--json"):
            as_json = True
        elif a == "-1":
            header, fields = False, ["ctid"]
        elif a in ("-o", "--output"):
            i += 1
            fields = args[i].split(",")
        elif a.startswith("-o"):
            fields = a[2:].split(",")
        elif a.isdigit():
            ids.append(a)
        else:
            die(1, f"Unrecognized option: {a}")
        i += 1
    for f in fields or []:
        if f not in FIELD_HDR:
            die(1, f"Unknown field: {f}")
    known = sorted((f[:-5] for f in os.listdir(CONF_DIR) if re.match(r"^\d+\.conf$", f)), key=int)
    for ctid in ids:
        if ctid not in known:
            die(1, f"Container(s) not found: {ctid}")
    recs = [ct_record(c) for c in (ids or known)]
    if not (show_all or ids):
        recs = [r for r in recs if r["status"] == "running"]
    fields = fields or ["ctid", "numproc", "status", "ip", "hostname"]
    if as_json:
        body = ",\n".join("  {" + ", ".join(f'"{f}": {json_value(r[f])}' for f in fields) + "}"
                          for r in recs)
        print("[\n" + body + "\n]")
        return
    if header:
        print(" ".join(FIELD_HDR[f][0].rjust(FIELD_HDR[f][1]) if FIELD_HDR[f][1] > 0
                       else FIELD_HDR[f][0].ljust(-FIELD_HDR[f][1]) for f in fields).rstrip())
    for r in recs:
        print(" ".join(text_cell(r, f, n == len(fields) - 1) for n, f in enumerate(fields)).rstrip())


def main():
    tool, args = sys.argv[1], sys.argv[2:]
    if tool in ("vzmigrate", "vzdump"):
        import vzdouble_move

        return vzdouble_move.main(tool, args)
    return {"vzctl": vzctl, "vzlist": vzlist}[tool](args)


if __name__ == "__main__":
    main()
