"""How ferry decides a remote command's output has ended (adapters/openvz/ssh.py ``_collect``), on a
virtual clock: a channel plays back what a node's sshd sent and when.

sshd may send the exit status before the last output, so the end is the EOF; a command that left a
background process holding its stdout never sends one, so ferry stops waiting once the output has
been silent for a grace period after the status. Silence, not time since the status: output still
arriving on a loaded node must be read to its end, or a parser would get a cut answer.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from adapters.openvz import ssh

GRACE = ssh._OUTPUT_GRACE_S


class Played:
    """A channel whose events (time, kind, data) arrive on a virtual clock."""

    def __init__(self, events: list[tuple[float, str, bytes]]) -> None:
        self.now = 0.0
        self.events = sorted(events, key=lambda e: e[0])
        self.closed = False
        self.status_event = SimpleNamespace(wait=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.now += seconds

    def select(self, _r, _w, _x, seconds: float):
        self._sleep(seconds)
        return [], [], []

    def _due(self, kind: str) -> list[tuple[float, str, bytes]]:
        return [e for e in self.events if e[1] == kind and e[0] <= self.now]

    def _take(self, kind: str) -> bytes:
        event = self._due(kind)[0]
        self.events.remove(event)
        return event[2]

    def recv_ready(self) -> bool:
        return bool(self._due("out"))

    def recv(self, _n: int) -> bytes:
        return self._take("out")

    def recv_stderr_ready(self) -> bool:
        return bool(self._due("err"))

    def recv_stderr(self, _n: int) -> bytes:
        return self._take("err")

    def exit_status_ready(self) -> bool:
        return bool(self._due("status"))

    @property
    def eof_received(self) -> bool:
        return bool(self._due("eof"))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def play(monkeypatch: pytest.MonkeyPatch):
    def run(events: list[tuple[float, str, bytes]], timeout: float = 60.0):
        chan = Played(events)
        monkeypatch.setattr(ssh, "time", SimpleNamespace(monotonic=lambda: chan.now))
        monkeypatch.setattr(ssh, "select", SimpleNamespace(select=chan.select))
        out, err = ssh.Shell._collect(chan, "n1", "vzctl status 101", timeout)
        return bytes(out), bytes(err), chan.now
    return run


def test_output_trickling_after_the_status_is_read_to_its_end(play):
    # Each gap is shorter than the grace, the whole tail three times longer: all of it is read.
    gap = GRACE * 0.75
    events = [(0.1, "status", b""), (0.1, "out", b"CTID 101 ")]
    events += [(0.1 + gap * i, "out", part) for i, part in enumerate([b"exist ", b"mounted ", b"running\n"], 1)]
    events.append((0.1 + gap * 4, "eof", b""))
    out, _, ended = play(events)
    assert out == b"CTID 101 exist mounted running\n"
    assert ended == pytest.approx(0.1 + gap * 4, abs=0.05)


def test_a_status_without_eof_ends_after_the_grace_of_silence(play):
    # A background process holds stdout open: no EOF ever. ferry takes what came and goes on,
    # a grace after the last output, long before the command's timeout.
    out, err, ended = play([(0.2, "out", b"started\n"), (0.3, "status", b""), (1.0, "err", b"warn\n")])
    assert (out, err) == (b"started\n", b"warn\n")
    assert 1.0 + GRACE <= ended <= 1.0 + GRACE + 0.1


def test_eof_then_status_ends_at_the_status(play):
    out, _, ended = play([(0.1, "out", b"gone\n"), (0.2, "eof", b""), (0.5, "status", b"")])
    assert out == b"gone\n"
    assert ended == pytest.approx(0.5, abs=0.02)


def test_no_status_by_the_timeout_is_a_lost_command_that_says_so(play):
    with pytest.raises(ssh.CommandLost, match=r"`vzctl status 101` did not finish in 5 s") as lost:
        play([(0.1, "out", b"CTID 101 exi")], timeout=5.0)
    assert lost.value.outcome == ssh.TIMED_OUT
