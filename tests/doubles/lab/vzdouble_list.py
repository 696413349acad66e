"""``vzlist`` of the lab's OpenVZ double (interface: src/vzlist.c, see vzdouble.py).

``-a -S -H -t -j -o f,f -1 [CTID...]``: fixed-width columns with ``-`` for empty cells; ``-j``
prints strings unescaped, as the real tool does; ubc/diskspace fields as objects; exit 1 for an
unknown CTID or field.
"""

import os
import re
import subprocess

from vzdouble import CONF_DIR, conf_path, die, init_pid, private_of, read_conf

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
