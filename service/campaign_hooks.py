"""What happens to a node between its drain and its restore, and around them.

    [maintenance] hook_command = ["/usr/local/sbin/patch-node", "{node}"]
        campaign group drained --run_hook (argv, {node} replaced; killed after hook_timeout_s)-->
        exit 0: the campaign restores the node | else / killed: the operator is notified and
        restores it by hand ('ferry node restore N')
    no hook_command: the operator patches and runs 'ferry node restore N' (the manual "done");
        after done_timeout_s without it, the operator is notified
    [maintenance.ha] (Proxmox): node drain --SSH to the cluster node--> ha-manager crm-command
        node-maintenance enable N (before any move); node restore --> ... disable N (before the
        containers come back: a node in HA maintenance receives nothing)

The hook's command is argv from the operator's own config, never a shell string; its exit status,
duration and the end of its output are journaled in the node's drain job.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adapters.base import JournalEntry
from fleet.model import NodeName

#: How much of a hook's output is kept in the journal (its end: where errors are).
OUTPUT_TAIL_CHARS = 2000


class HaSshSection(BaseModel):
    """The cluster node ferry runs ``ha-manager`` on, over SSH (host keys checked)."""

    model_config = ConfigDict(extra="forbid")
    node: NodeName
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    identity_file: str = Field(min_length=1)
    known_hosts_file: str = Field(min_length=1)
    timeout_s: float = Field(default=60.0, gt=0, le=3600)


class MaintenanceSection(BaseModel):
    """``[maintenance]``: the per-node hook of campaigns, and Proxmox HA maintenance."""

    model_config = ConfigDict(extra="forbid")
    #: argv run on the ferry host for each drained node ({node} is replaced); empty: manual done.
    hook_command: list[str] = Field(default_factory=list, max_length=256)
    hook_timeout_s: float = Field(default=7200.0, gt=0, le=7 * 86400)
    #: Without a hook: how long an operator's 'ferry node restore N' may take before a reminder.
    done_timeout_s: float = Field(default=4 * 3600.0, gt=0, le=30 * 86400)
    #: Set and clear Proxmox HA node maintenance over SSH (absent: ferry only reads it).
    ha: HaSshSection | None = None


@dataclass(frozen=True)
class HookResult:
    status: int | None  # None: killed at its timeout
    output: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.status == 0

    def entry(self, argv: list[str]) -> JournalEntry:
        return JournalEntry(host="localhost", what=argv, status=self.status, duration_ms=self.duration_s * 1000,
                            kind="command", detail={"hook": True, "timed_out": self.status is None,
                                                    "output": self.output})


def hook_argv(command: list[str], node: str) -> list[str]:
    return [part.replace("{node}", node) for part in command]


def run_hook(argv: list[str], timeout_s: float) -> HookResult:
    """Run the hook to its end or its timeout (then it and its children are killed)."""
    started = time.monotonic()
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=timeout_s, start_new_session=True, check=False)
        status, output = done.returncode, (done.stdout or "") + (done.stderr or "")
    except subprocess.TimeoutExpired as exc:
        status, output = None, _text(exc.stdout) + _text(exc.stderr) + f"\nkilled after {timeout_s:g} s"
    except OSError as exc:  # not found, not executable
        status, output = 127, f"{argv[0]}: {exc.strerror}"
    return HookResult(status, output[-OUTPUT_TAIL_CHARS:], time.monotonic() - started)


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


# -- Proxmox HA node maintenance over SSH ---------------------------------------------------------
def _resolve(config: Any, path: str) -> str:
    base = config.path.parent if config.path else Path.cwd()
    return str(base / path)


def ha_shell(config: Any) -> Any:
    """An SSH pool to the configured cluster node (the OpenVZ backend's, host keys checked)."""
    from adapters.openvz.settings import OpenVZSettings
    from adapters.openvz.ssh import Shell

    ha = config.maintenance.ha
    settings = OpenVZSettings(nodes={ha.node: {"host": ha.host, "port": ha.port, "user": ha.user}},
                              identity_file=_resolve(config, ha.identity_file),
                              known_hosts_file=_resolve(config, ha.known_hosts_file),
                              command_timeout_s=ha.timeout_s)
    return Shell(settings)


def set_ha_maintenance(config: Any, node: str, enable: bool) -> list[JournalEntry]:
    """``ha-manager crm-command node-maintenance enable|disable node`` on the configured cluster
    node; the journal entries (none when not configured). Raises PermanentError on failure."""
    from adapters.proxmox.hamaint import set_node_maintenance

    ha = config.maintenance.ha
    if ha is None:
        return []
    entries: list[JournalEntry] = []
    shell = ha_shell(config)
    try:
        set_node_maintenance(shell, ha.node, node, enable, entries.append)
    finally:
        shell.close()
    return entries
