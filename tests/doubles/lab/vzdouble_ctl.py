"""``vzctl`` of the lab's OpenVZ double (interface: man/vzctl.8.in, see vzdouble.py).

A container is a real process tree: ``unshare --pid --mount --uts --fork`` + ``chroot`` into its
private area; ``start`` adds its IPs as /32 addresses on the node's NIC and announces them,
``stop`` sends SIGTERM to its init (SIGKILL after 3 s) and removes them, ``set --save`` edits
the config, ``chkpnt --suspend/--resume`` freezes it (SIGSTOP), which vzmigrate --live uses.
``/etc/vz/lab.conf`` ``FAIL_START="CTID ..."`` makes ``start`` of those containers fail (exit 1).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

from vzdouble import (
    RUN_DIR,
    Lock,
    alive,
    announce,
    conf_path,
    die,
    init_pid,
    ip_addrs,
    lab_conf,
    net,
    private_of,
    read_conf,
    state_of,
    write_conf_keys,
)


def ct_start(ctid, quiet=False):
    exists, pid, _ = state_of(ctid)
    if not exists:
        die(14, f"Container config file does not exist: {conf_path(ctid)}")
    if pid:
        die(32, "Container is already running")
    if ctid in lab_conf().get("FAIL_START", "").split():  # the lab's knob: this start fails
        die(1, f"Error: CT {ctid} failed to start (lab.conf FAIL_START)")
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
