"""The OpenVZ SSH pool against a real sshd (the namespace lab, one node): a channel the node
refuses fails that one command, journaled as never started, and cuts none of the commands other
moves run on the same connection (closing the shared connection used to lose them all, and the
engine then re-ran them while their first runs might still be going on the node)."""

from __future__ import annotations

import os
import threading
import time

import paramiko
import pytest

from adapters.base import JournalEntry
from adapters.openvz.settings import load_settings
from adapters.openvz.ssh import NOT_STARTED, CommandLost, Result, Shell
from tests.doubles.lab.netlab import Lab, missing_binaries

pytestmark = [pytest.mark.lab]

if os.geteuid() != 0:
    pytest.skip("the OpenVZ lab needs root (network and mount namespaces)", allow_module_level=True)
if missing_binaries():
    pytest.skip(f"the OpenVZ lab needs: {', '.join(missing_binaries())}", allow_module_level=True)

MARK = "/tmp/ferry-pool-slow-started"
#: The lab's sshd allows this many sessions on one connection (netlab.py: MaxSessions).
MAX_SESSIONS = 100


@pytest.fixture(scope="module")
def lab():
    with Lab().up(1) as lab:
        yield lab


def wait_until(ready, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_refused_channel_cuts_no_other_command_on_the_connection(lab):
    shell = Shell(load_settings(lab.settings()))
    journal: list[JournalEntry] = []
    node = lab.nodes["n1"]
    node.run(f"rm -f {MARK}")
    slow: dict[str, Result | BaseException] = {}

    def run_slow() -> None:
        try:
            slow["result"] = shell.run("n1", ["sh", "-c", f"touch {MARK}; sleep 2; echo finished"],
                                       journal.append)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            slow["result"] = exc

    thread = threading.Thread(target=run_slow)
    thread.start()
    held: list[paramiko.Channel] = []
    try:
        wait_until(lambda: node.run(f"test -e {MARK} && echo yes", check=False).strip() == "yes")
        shared = shell.client("n1")
        with pytest.raises(paramiko.ChannelException):  # every session sshd allows is taken
            for _ in range(MAX_SESSIONS + 1):
                held.append(shared.get_transport().open_session(timeout=10))
        with pytest.raises(CommandLost) as lost:
            shell.run("n1", ["echo", "refused"], journal.append)
        assert lost.value.outcome == NOT_STARTED
        again = shell.run("n1", ["echo", "again"], journal.append)  # a fresh connection
        assert again.out.strip() == "again" and shell.client("n1") is not shared
        thread.join(timeout=60)
        assert not thread.is_alive()
        result = slow["result"]
        assert isinstance(result, Result) and result.out.strip() == "finished", result
        # the old connection closed once its last command ended (the held channels went with it)
        wait_until(lambda: not shared.get_transport() or not shared.get_transport().is_active())
    finally:
        thread.join(timeout=60)
        for chan in held:
            chan.close()
        shell.close()
        node.run(f"rm -f {MARK}", check=False)
    by_command = {e.what[-1]: e for e in journal}
    refused = by_command["refused"]
    assert refused.status is None and refused.detail["outcome"] == NOT_STARTED, refused
    assert refused.detail["error"].startswith("n1: could not start `echo refused`: ChannelException")
    assert by_command["again"].status == 0 and by_command["again"].detail == {}
    slow_entry = next(e for e in journal if e.what[0] == "sh")
    assert slow_entry.status == 0 and slow_entry.detail == {}
