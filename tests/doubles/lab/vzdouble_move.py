"""``vzmigrate`` and ``vzdump`` of the lab's OpenVZ double (see vzdouble.py for the sources).

vzmigrate follows bin/vzmigrate.in step by step: lock, status, connect, checks (exists on
destination, IPs in use, CPT version for --live), --check-only exit, copy config, sync private,
stop (or suspend for --live), second sync, start on the destination, then destroy the source
(``-r yes``, the default) or rename its config to ``CTID.conf.migrated`` (``-r no``). Errors undo
the destination unless ``--keep-dst``.
"""

import io
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time

import vzdouble as vz
import vzdouble_ctl as ctl

ERR_USAGE, ERR_STOPPED, ERR_CONNECT, ERR_COPY, ERR_START = 1, 2, 4, 6, 7
ERR_EXISTS, ERR_NOEXIST, ERR_IP_IN_USE, ERR_CPT_VER, ERR_LOCKED = 9, 10, 12, 17, 20


def parse_migrate(args):
    opts = {"live": False, "remove": True, "keep_dst": False, "check": False, "rsync": [],
            "ssh": []}
    while args and args[0].startswith("-"):
        a = args.pop(0)
        if a in ("--live", "--online"):
            opts["live"] = True
        elif a in ("-r", "--remove-area"):
            val = args.pop(0) if args else ""
            if val not in ("yes", "no"):
                vz.die(ERR_USAGE, f"Invalid usage: Bad argument for {a}: {val}")
            opts["remove"] = val == "yes"
        elif a == "--keep-dst":
            opts["keep_dst"] = True
        elif a in ("--check-only", "--dry-run"):
            opts["check"] = True
        elif a.startswith("--rsync="):
            opts["rsync"] = shlex.split(a[len("--rsync="):])
        elif a.startswith("--ssh="):
            opts["ssh"] = shlex.split(a[len("--ssh="):])
        elif a in ("-v", "-t", "--times", "--ssh-mux", "-f", "--nodeps"):
            pass
        else:
            vz.die(ERR_USAGE, f"Invalid usage: unknown option {a}")
    if len(args) != 2:
        vz.die(ERR_USAGE, "Invalid usage: not enough parameters")
    return opts, args[0], args[1]


class Migration:
    def __init__(self, opts, host, ctid):
        self.opts, self.host, self.ctid = opts, host, ctid
        self.ssh = vz.SSH + opts["ssh"]
        self.conf = vz.conf_path(ctid)
        self.private = vz.private_of(ctid)

    def remote(self, command, **kw):
        return subprocess.run(self.ssh + [f"root@{self.host}", command], **kw)

    def rsync(self):
        cmd = (["rsync"] + vz.RSYNC_OPTS + self.opts["rsync"] + ["-e", shlex.join(self.ssh),
               f"{self.private}/", f"root@{self.host}:{self.private}/"])
        rc = subprocess.run(cmd).returncode
        return rc in (0, 24)  # 24: files vanished during the copy, ignored by vzmigrate too

    def undo_dest(self):
        if not self.opts["keep_dst"]:
            self.remote(f"rm -rf {shlex.quote(self.private)}")
        self.remote(f"rm -f {shlex.quote(self.conf)}")

    def checks(self, running):
        if self.opts["live"] and not running:
            vz.die(ERR_STOPPED, "Error: Can't perform live migration of a stopped container")
        if self.remote("/bin/true", capture_output=True).returncode != 0:
            vz.die(ERR_CONNECT, "Error: Can't connect to destination address using public key")
        if self.opts["live"] and vz.lab_conf().get("REFUSE_LIVE") == "yes":
            vz.die(ERR_CPT_VER, "Error: CPT version check failed on destination node!\n"
                   "Error: Can't continue live migration")
        st = self.remote(f"vzctl --quiet status {self.ctid}", capture_output=True, text=True)
        if st.stdout.split()[2:3] == ["exist"]:
            vz.die(ERR_EXISTS, f"Error: CT #{self.ctid} already exists on destination node")
        ips = [i.split("/")[0] for i in vz.ip_addrs(self.ctid)]
        there = self.remote("ip -o -4 addr show", capture_output=True, text=True).stdout
        if any(f" {ip}/" in there for ip in ips):
            vz.die(ERR_IP_IN_USE, "Error: IP address(es) already in use on destination node")

    def run(self):
        exists, pid, _ = vz.state_of(self.ctid)
        if not exists:
            vz.die(ERR_NOEXIST, f"Error: CT #{self.ctid} doesn't exist")
        self.checks(pid is not None)
        if self.opts["check"]:
            return
        kind = "live migration" if self.opts["live"] else "migration"
        print(f"Starting {kind} of CT {self.ctid} to {self.host}")
        copy = subprocess.run(["scp", "-q", "-o", "BatchMode=yes", self.conf,
                               f"root@{self.host}:{self.conf}"])
        if copy.returncode != 0 or self.remote(f"mkdir -p {shlex.quote(self.private)}").returncode:
            vz.die(ERR_COPY, "Error: Failed to copy config file")
        if not self.rsync():
            self.undo_dest()
            vz.die(ERR_COPY, "Error: Failed to sync container private areas")
        if pid:
            self.switch()
        if self.opts["remove"]:
            ctl.ct_destroy(self.ctid)
        else:  # "Move config as veid.migrated to allow backward migration"
            os.replace(self.conf, self.conf + ".migrated")

    def switch(self):
        """Stop (or freeze, for --live) the source, copy the rest, start on the destination."""
        if self.opts["live"]:
            ctl.chkpnt(self.ctid, ["--suspend"])
        else:
            ctl.ct_stop(self.ctid, quiet=True)
        if not self.rsync():
            self.restart_source()
            self.undo_dest()
            vz.die(ERR_COPY, "Error: Failed to sync container private areas")
        if self.opts["live"]:
            ctl.ct_stop(self.ctid, quiet=True)  # the frozen source goes before the copy resumes
        if self.remote(f"vzctl start {self.ctid}").returncode != 0:
            self.restart_source()
            self.undo_dest()
            vz.die(ERR_START, "Error: Failed to start container")

    def restart_source(self):
        if vz.init_pid(self.ctid) and os.path.exists(f"{vz.RUN_DIR}/{self.ctid}.suspended"):
            ctl.chkpnt(self.ctid, ["--resume"])
        elif not vz.init_pid(self.ctid):
            ctl.ct_start(self.ctid, quiet=True)


def vzdump(args):
    opts = {"compress": False, "dumpdir": "/var/lib/vz/dump", "mode": None, "restore": None}
    while args and args[0].startswith("--"):
        a = args.pop(0)
        if a == "--compress":
            opts["compress"] = True
        elif a in ("--dumpdir", "--restore"):
            opts[a[2:]] = args.pop(0)
        elif a in ("--stop", "--suspend"):
            opts["mode"] = a[2:]
        else:
            vz.die(255, f"Unknown option: {a}")
    if len(args) != 1 or not args[0].isdigit():
        vz.die(255, "usage: vzdump OPTIONS [--all | VPSID]")
    if opts["restore"]:
        return restore(opts["restore"], args[0])
    return dump(args[0], opts)


def dump(ctid, opts):
    if not os.path.exists(vz.conf_path(ctid)):
        vz.die(255, f"ERROR: VPS {ctid} does not exist")
    os.makedirs(opts["dumpdir"], exist_ok=True)
    ext = "tgz" if opts["compress"] else "tar"
    stamp = time.strftime("%Y_%m_%d-%H_%M_%S")
    path = f"{opts['dumpdir']}/vzdump-openvz-{ctid}-{stamp}.{ext}"
    running = vz.init_pid(ctid) is not None
    if running and opts["mode"] == "stop":
        ctl.ct_stop(ctid, quiet=True)
    print(f"INFO: creating archive '{path}'")
    with tarfile.open(path + ".dat", "w:gz" if opts["compress"] else "w") as tar:
        tar.add(vz.private_of(ctid), arcname=".")
        data = open(vz.conf_path(ctid), "rb").read()
        info = tarfile.TarInfo("./etc/vzdump/vps.conf")
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    os.replace(path + ".dat", path)
    if running and opts["mode"] == "stop":
        ctl.ct_start(ctid, quiet=True)
    print(f"INFO: Finished Backup of VM {ctid}")


def restore(archive, ctid):
    if os.path.exists(vz.conf_path(ctid)):
        vz.die(255, f"ERROR: unable to restore VPS '{ctid}' - VPS already exists")
    private = f"/var/lib/vz/private/{ctid}"
    os.makedirs(private, exist_ok=True)
    with tarfile.open(archive) as tar:
        # the "tar" filter (Python >= 3.11.4) keeps owners and modes as vzrestore's tar -p does
        tar.extractall(private, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    conf_in = f"{private}/etc/vzdump/vps.conf"
    shutil.move(conf_in, vz.conf_path(ctid))  # /etc/vz and /var/lib/vz are two mounts on a node
    vz.write_conf_keys(vz.conf_path(ctid), {"VE_PRIVATE": "/var/lib/vz/private/$VEID",
                                            "VE_ROOT": "/vz/root/$VEID"})
    print(f"INFO: restore of '{archive}' to CT {ctid} successful")


def main(tool, args):
    if tool == "vzdump":
        return vzdump(list(args))
    opts, host, ctid = parse_migrate(list(args))
    if not ctid.isdigit():
        vz.die(ERR_NOEXIST, f"Error: bad CTID {ctid}")
    with vz.Lock(ctid, code=ERR_LOCKED):
        Migration(opts, host, ctid).run()
    sys.exit(0)
