"""Pure parts of the OpenVZ adapter: settings, config/vzlist parsing, /proc/net/tcp, quoting."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from adapters.base import BackendError, PermanentError, TransientError
from adapters.openvz import create_backend, inventory, retire
from adapters.openvz.forwarding import listening_ports
from fleet.errors import InputError


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "id").write_text("key")
    (tmp_path / "kh").write_text("")
    return {"identity_file": str(tmp_path / "id"), "known_hosts_file": str(tmp_path / "kh"),
            "nodes": {"ovz1": {"host": "10.0.0.1"}}}


def test_settings_defaults_are_strict(files):
    backend = create_backend(files)
    assert backend.settings.strict_host_key_checking is True
    assert backend.settings.nodes["ovz1"].port == 22


@pytest.mark.parametrize("key,value", [("connect_timeout_s", -1), ("rsync_options", ["x; rm"]),
                                       ("nodes", {}), ("bogus", 1)])
def test_bad_settings_name_key_and_value(files, key, value):
    with pytest.raises(InputError) as err:
        create_backend({**files, key: value})
    assert err.value.key.startswith(f"openvz.{key}")
    assert "\n" not in str(err.value)


def test_bad_node_host_is_refused(files):
    with pytest.raises(InputError, match="openvz.nodes.ovz1.host"):
        create_backend({**files, "nodes": {"ovz1": {"host": "a b;c"}}})


def test_conf_parser_units_and_quotes():
    conf = inventory.parse_conf('PHYSPAGES="0:262144"\nDISKSPACE="10485760:11534336"\n'
                                "IP_ADDRESS=\"10.0.0.5 10.0.0.6/24\"\nHOSTNAME='a; rm -rf /'\n"
                                "# COMMENT=\"x\"\nCPUS=2\n")
    assert inventory.limit_of(conf["PHYSPAGES"]) * 4 // 1024 == 1024
    assert inventory.ips_of(conf) == ["10.0.0.5", "10.0.0.6"]
    assert conf["HOSTNAME"] == "a; rm -rf /" and "COMMENT" not in conf and conf["CPUS"] == "2"


def test_container_from_vzlist_row():
    row = {"ctid": 101, "status": "running", "physpages": {"held": 2560, "limit": 262144},
           "diskspace": {"usage": 2097152}}
    ct = inventory.container_from("n1", row, {"PHYSPAGES": "0:262144", "HOSTNAME": "web",
                                              "IP_ADDRESS": "1.2.3.4", "CPUS": "2"})
    assert (ct.memory_mb, ct.memory_used_mb, ct.disk_gb, ct.cpus) == (1024, 10, 2.0, 2.0)


def test_listening_ports_from_proc_net_tcp():
    text = ("  sl  local_address rem_address   st\n"
            "   0: 6500140A:0050 00000000:0000 0A\n"     # 10.0.0.101:80 LISTEN
            "   1: 00000000:0016 00000000:0000 0A\n"     # 0.0.0.0:22 LISTEN
            "   2: 6600140A:1F90 00000000:0000 0A\n"     # other container's address
            "   3: 6500140A:0050 0200140A:C350 01\n")    # established
    assert listening_ports(text, ["10.20.0.101"]) == [22, 80]


def test_untrusted_names_stay_one_argument():
    argv = ["vzctl", "status", "x; rm -rf /"]
    assert shlex.split(shlex.join(argv)) == argv


def test_cleanup_due_reads_the_source_node_clock():
    due = retire.due("state 1000 400 1 1030 end".split(), retention_hours=0.25)  # retire at 1300
    assert (due.forwarders, due.source_area, due.source_was_running) == (False, False, True)
    text = due.remains("n1", "101")
    assert "forwarders of CT 101 until 1970-01-01 00:17:10 UTC (in 30 s)" in text
    assert "source area of CT 101 until 1970-01-01 00:21:40 UTC (in 300 s)" in text
    later = retire.due("state 1300 400 0 0 end".split(), retention_hours=0.25)  # no forwarders
    assert (later.forwarders, later.source_area, later.source_was_running) == (True, True, False)
    gone = retire.due(["gone"], retention_hours=24)  # no state left: nothing to wait for
    assert gone.forwarders and gone.source_area


@pytest.mark.parametrize("answer", ["", "state 1000 400", "state 1000 400 1 1030", "state x 400 1 0 end",
                                    "1000 400 1 1030"])
def test_a_cut_answer_never_retires_the_source_early(answer):
    """Output cut short (a lost connection, output after the exit status) is asked again, never
    read as "no state left" (which would delete the source area before its retention ended)."""
    with pytest.raises(TransientError):
        retire.due(answer.split(), retention_hours=24, node="n1")


def test_a_state_without_its_prepared_mark_keeps_the_source_area():
    with pytest.raises(PermanentError, match="keeping the source area"):
        retire.due("state 1000 - 1 0 end".split(), retention_hours=24)


def test_the_state_script_speaks_whole_answers(tmp_path):
    """The script itself, run by sh as the node runs it: a missing state says "gone", a state
    says every field between "state" and "end", an empty forward.until counts as 0."""
    def answer(path):
        return subprocess.run(["sh", "-c", retire.STATE_SCRIPT, "ferry", str(path)], capture_output=True,
                              text=True, check=True).stdout.split()
    assert answer(tmp_path / "missing") == ["gone"]
    (tmp_path / "prepared").touch()
    (tmp_path / "forward.until").write_text("")
    words = answer(tmp_path)
    assert words[0] == "state" and words[-1] == "end" and words[3:5] == ["0", "0"], words
    assert abs(retire.due(words, retention_hours=1).retire_at - (tmp_path / "prepared").stat().st_mtime - 3600) < 1
    (tmp_path / "prepared").unlink()
    assert answer(tmp_path)[2] == "-"


def test_hostile_hostname_and_tags_are_kept_escaped_not_fatal():
    row = {"ctid": 102, "status": "running", "physpages": {"held": 0, "limit": 262144}}
    conf = {"HOSTNAME": "web\x1b[2J\u202eexe.txt", "DESCRIPTION": "plb_pin_\x07n1 other", "IP_ADDRESS": "1.2.3.5"}
    ct = inventory.container_from("n1", row, conf)
    assert ct.name == "web\\x1b[2J\\u202eexe.txt"
    assert ct.tags == ["plb_pin_\\x07n1"]
    long = inventory.container_from("n1", row, {"HOSTNAME": "x" * 300 + "\x1b"})
    assert long.name == "x" * 253


def test_unusable_address_stops_discovery_naming_the_container_and_key():
    row = {"ctid": 103, "status": "running"}
    with pytest.raises(BackendError) as err:
        inventory.container_from("n2", row, {"IP_ADDRESS": "10.0.0.300"})
    assert str(err.value).startswith("the cluster reported an unusable value: container 103 on n2: ips[0]=")
    assert "not an IP address" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("answer", "status"), [
    ("CTID 101 exist mounted running\n", "running"),
    ("CTID 101 exist unmounted down suspended\n", "stopped"),
    ("CTID 101 deleted unmounted down\n", "absent"),
])
def test_vzctl_status_lines_as_vzctl_prints_them(answer, status):
    assert inventory.ct_status("n1", "101", answer) == status


@pytest.mark.parametrize("answer", ["", "CTID 101 exi", "CTID 101 exist mounted", "Unable to open /dev/vzctl"])
def test_a_cut_vzctl_status_is_asked_again_never_read_as_absent(answer):
    with pytest.raises(TransientError, match="vzctl status 101"):
        inventory.ct_status("n1", "101", answer, 0)


def test_vzctl_refusing_a_status_is_said_in_its_words():
    with pytest.raises(PermanentError, match="exited 21: Invalid CTID: x"):
        inventory.ct_status("n1", "x", "", 21, "Invalid CTID: x\n")
