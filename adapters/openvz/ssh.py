"""SSH to the nodes with paramiko: one reused connection per node, every command journaled.

    Backend step --argv--> Shell.run(node, argv) --shlex.join--> paramiko exec_command
                                  |                                     |
                                  +-- JournalEntry(host, argv, exit status, duration) <--+

Commands are argv lists, joined with :func:`shlex.join` so that untrusted names (a container
called ``x; rm -rf /``) stay one argument. Host keys are checked against ``known_hosts_file``
with paramiko's ``RejectPolicy`` (an unknown key is refused with a message that says how to add
it); only ``strict_host_key_checking = false`` (labs) accepts unknown keys.
A broken connection (node rebooted, network cut mid-rsync) raises :class:`CommandLost` (a
:class:`TransientError`, so the engine retries the step) and the connection is retired from the
pool: new commands open a fresh one, while the commands other moves still run on the old one
finish there (it closes when the last of them ends). Closing it at once would cut their sessions
too: a failure of one channel (sshd refused or was slow to open it, under load) would turn into
lost commands of every move on that node, each of which the engine would then re-run while the
first run may still be going on the node.

Every command is journaled once, with its exit status, or with ``status`` None and the outcome
that says why there is none (``detail["outcome"]``): ``not started`` (no session reached the
node: nothing ran), ``connection lost`` (the node got the command; it may have run, or may still
run), ``timed out`` (no end within the timeout; the session was closed).
"""

from __future__ import annotations

import select
import shlex
import threading
import time
from collections import Counter
from dataclasses import dataclass

import paramiko

from adapters.base import Journal, JournalEntry, PermanentError, TransientError
from adapters.openvz.settings import OpenVZSettings

#: After a command's exit status, how long its output may stay silent before ferry stops
#: waiting for the output's end (EOF): a command that leaves a background process holding its
#: stdout never sends one.
_OUTPUT_GRACE_S = 2.0


#: ``detail["outcome"]`` of a journaled command that has no exit status (see the module docstring).
NOT_STARTED, CONNECTION_LOST, TIMED_OUT = "not started", "connection lost", "timed out"


class CommandLost(TransientError):
    """A command's SSH session ended without an exit status. ``outcome`` says whether the node got
    the command (CONNECTION_LOST, TIMED_OUT) or not (NOT_STARTED)."""

    def __init__(self, message: str, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.status == 0


class Shell:
    """A pool of SSH connections, one per node, opened on first use and kept alive."""

    def __init__(self, settings: OpenVZSettings) -> None:
        self.settings = settings
        self._clients: dict[str, paramiko.SSHClient] = {}
        # The engine runs several moves at once on one backend: one connection per node, shared
        # by their threads (paramiko channels are independent), opened and dropped under a lock.
        self._lock = threading.Lock()
        #: Commands running on each connection, and the connections retired from the pool
        #: (closed when their last command ends).
        self._running = Counter[paramiko.SSHClient]()
        self._retired: set[paramiko.SSHClient] = set()

    def _connect(self, node: str) -> paramiko.SSHClient:
        access = self.settings.nodes.get(node)
        if access is None:
            raise PermanentError(f"node {node!r} is not in [openvz.nodes] of ferry's config")
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.settings.known_hosts_file))
        policy = (paramiko.RejectPolicy() if self.settings.strict_host_key_checking
                  else paramiko.AutoAddPolicy())
        client.set_missing_host_key_policy(policy)
        timeout = self.settings.connect_timeout_s
        try:
            client.connect(access.host, port=access.port, username=access.user,
                           key_filename=str(self.settings.identity_file), timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout, look_for_keys=False,
                           allow_agent=False)
        except paramiko.BadHostKeyException as exc:
            raise PermanentError(
                f"host key of {node} ({access.host}) does not match {self.settings.known_hosts_file}:"
                " the node was reinstalled or this is not the node; verify, then update the file"
            ) from exc
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise PermanentError(
                    f"host key of {node} ({access.host}) is unknown; add it to "
                    f"{self.settings.known_hosts_file} (ssh-keyscan -p {access.port} {access.host},"
                    " then verify the fingerprint)") from exc
            raise TransientError(f"SSH to {node} ({access.host}) failed: {exc}") from exc
        except (OSError, EOFError) as exc:
            raise TransientError(f"cannot reach {node} ({access.host}:{access.port}): {exc}") from exc
        transport = client.get_transport()
        if transport is not None and self.settings.keepalive_s:
            transport.set_keepalive(int(max(1, self.settings.keepalive_s)))
        return client

    def client(self, node: str) -> paramiko.SSHClient:
        with self._lock:
            return self._pooled(node)

    def _pooled(self, node: str) -> paramiko.SSHClient:
        """The node's live connection, opened if there is none (the caller holds the lock)."""
        client = self._clients.get(node)
        transport = client.get_transport() if client else None
        if client is None or transport is None or not transport.is_active():
            if client is not None and self._let_go(client):  # dead: closing it takes no time
                client.close()
            client = self._connect(node)
            self._clients[node] = client
        return client

    def _let_go(self, client: paramiko.SSHClient) -> bool:
        """Retire ``client`` (the caller holds the lock and took it out of the pool); True when
        no command runs on it, so it may be closed now."""
        if self._running[client] > 0:
            self._retired.add(client)
            return False
        del self._running[client]
        return True

    def _checkout(self, node: str) -> paramiko.SSHClient:
        """The node's connection, counted as running one more command until :meth:`_checkin`
        (in one hold of the lock: no other thread closes it in between)."""
        try:
            with self._lock:
                client = self._pooled(node)
                self._running[client] += 1
                return client
        except TransientError as exc:
            raise CommandLost(str(exc), NOT_STARTED) from exc

    def _checkin(self, client: paramiko.SSHClient) -> None:
        with self._lock:
            self._running[client] -= 1
            done = client in self._retired and self._running[client] <= 0
            if done:
                self._retired.discard(client)
                del self._running[client]
        if done:
            client.close()

    def drop(self, node: str, client: paramiko.SSHClient | None = None) -> None:
        """Take ``node``'s connection out of the pool (only ``client``, if given: another thread
        may have replaced a broken one already). New commands open a fresh connection; the old
        one closes now if no command runs on it, else when the last one ends."""
        with self._lock:
            if client is not None and self._clients.get(node) is not client:
                return
            client = self._clients.pop(node, None)
            if client is None or not self._let_go(client):
                return
        client.close()

    def run(self, node: str, argv: list[str], journal: Journal, *, timeout: float | None = None,
            check: bool = True, stdin: bytes | None = None) -> Result:
        """Run ``argv`` on ``node``; journal it; raise on failure when ``check``."""
        command = shlex.join(argv)
        started = time.monotonic()
        status: int | None = None
        detail: dict[str, str] = {}
        try:
            result = self._exec(node, command, timeout or self.settings.command_timeout_s, stdin)
            status = result.status
        except CommandLost as exc:
            detail = {"outcome": exc.outcome, "error": str(exc)[-300:]}
            raise
        except PermanentError as exc:  # refused before any session: unknown node, host key
            detail = {"outcome": NOT_STARTED, "error": str(exc)[-300:]}
            raise
        finally:
            journal(JournalEntry(host=node, what=list(argv), status=status,
                                 duration_ms=(time.monotonic() - started) * 1000, detail=detail))
        if check and not result.ok:
            raise PermanentError(f"{node}: `{command}` exited {result.status}: "
                                 f"{(result.err or result.out).strip()[-300:]}")
        return result

    def _exec(self, node: str, command: str, timeout: float, stdin: bytes | None) -> Result:
        client = self._checkout(node)
        sent = False
        try:
            chan = client.get_transport().open_session(timeout=self.settings.connect_timeout_s)
            chan.settimeout(timeout)
            sent = True  # from here on the node may run the command
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = self._collect(chan, node, command, timeout)
            status = chan.recv_exit_status()
            chan.close()
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
            self.drop(node, client)
            if not sent:
                raise CommandLost(f"{node}: could not start `{command}`: {exc!r}", NOT_STARTED) from exc
            raise CommandLost(f"{node}: connection lost while running `{command}`: {exc}",
                              CONNECTION_LOST) from exc
        finally:
            self._checkin(client)
        if status == -1:  # no exit status: the session was cut (sshd killed, network down)
            self.drop(node, client)
            raise CommandLost(f"{node}: connection lost while running `{command}`", CONNECTION_LOST)
        return Result(status, out.decode(errors="replace"), err.decode(errors="replace"))

    @staticmethod
    def _collect(chan: paramiko.Channel, node: str, command: str,
                 timeout: float) -> tuple[bytearray, bytearray]:
        """Read stdout and stderr until the command ended *and* its output did. sshd may send
        the exit status before the last output (RFC 4254 section 6.10 orders only the status
        before the channel's close), so the end is the EOF; a command that leaves a background
        process holding its stdout never sends one, hence a short grace after the status."""
        out, err = bytearray(), bytearray()
        deadline, quiet_since = time.monotonic() + timeout, None
        while True:
            if chan.recv_ready():
                out += chan.recv(65536)
                quiet_since = None
                continue
            if chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
                quiet_since = None
                continue
            if chan.closed or (chan.eof_received and chan.exit_status_ready()):
                return out, err
            now = time.monotonic()
            if chan.exit_status_ready():
                # The grace counts silence, not time since the status: output still flowing
                # (a slow node, a loaded sshd) is read to its end.
                quiet_since = quiet_since or now
                if now - quiet_since > _OUTPUT_GRACE_S:
                    return out, err
            if now > deadline:
                chan.close()
                raise CommandLost(f"{node}: `{command}` did not finish in {timeout:.0f} s", TIMED_OUT)
            if chan.eof_received:  # output done, status on its way
                chan.status_event.wait(0.005)
            else:
                select.select([chan], [], [], 0.005)

    def close(self) -> None:
        """Close every connection, the retired ones still running a command too."""
        for node in list(self._clients):
            self.drop(node)
        with self._lock:
            retired, self._retired = self._retired, set()
            self._running.clear()
        for client in retired:
            client.close()
