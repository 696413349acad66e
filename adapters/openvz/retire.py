"""What an OpenVZ move's cleanup may do now, and what it leaves for later.

    source node: <state_dir>/<CT>/prepared (mtime), source_running, forward.until
        --STATE_SCRIPT--> "state now prepared running until end" | "gone"
        --due()--> Due(forwarders?, source area?)
    backend.cleanup: stop forwarders if due; retire the source area if due *and* the destination
    still stands; raise CleanupPending(Due.remains) while something is left.

Everything is read from the source node's clock and files, so a cleanup called hours later by
another ferry process (``ferry cleanup``, ``ferry serve``) decides the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from adapters.base import PermanentError, TransientError

#: Prints "state NOW PREPARED RUNNING UNTIL end" (epoch s, epoch s or "-", 0/1, epoch s or 0), or
#: "gone" when the move's state directory is not there. Both ends are spelled out so that an answer
#: cut short (a lost connection, output that arrived after the exit status) is never read as
#: "nothing left to wait for", which would retire the source area before its retention ended.
STATE_SCRIPT = ('cd "$1" 2>/dev/null || { echo gone; exit 0; }; '
                'prepared=$(stat -c %Y prepared 2>/dev/null); until=$(cat forward.until 2>/dev/null); '
                'echo state $(date +%s) ${prepared:--} $([ -e source_running ] && echo 1 || echo 0) '
                '${until:-0} end')


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


@dataclass(frozen=True)
class Due:
    """Which parts of the cleanup are due at ``now`` (the source node's clock)."""

    now: int
    forward_until: int
    retire_at: float
    source_was_running: bool

    @property
    def forwarders(self) -> bool:
        return self.now >= self.forward_until

    @property
    def source_area(self) -> bool:
        return self.now >= self.retire_at

    def remains(self, node: str, ct: str) -> str:
        """One line for the operator: what stays on ``node`` and when it is due."""
        parts = []
        if not self.forwarders:
            parts.append(f"forwarders of CT {ct} until {_utc(self.forward_until)} "
                         f"(in {self.forward_until - self.now} s)")
        if not self.source_area:
            parts.append(f"source area of CT {ct} until {_utc(self.retire_at)} "
                         f"(in {self.retire_at - self.now:.0f} s)")
        return f"kept on {node}: " + "; ".join(parts)


def due(state_words: list[str], retention_hours: float, node: str = "the source node") -> Due:
    """Parse :data:`STATE_SCRIPT`'s output. "gone" (no state left) means nothing is left to wait
    for; an answer that is not whole raises TransientError (asked again); a state without its
    "prepared" mark cannot say when retention ends, so the source area is kept (PermanentError)."""
    if state_words == ["gone"]:
        return Due(now=1, forward_until=0, retire_at=0, source_was_running=False)
    if len(state_words) != 6 or state_words[0] != "state" or state_words[-1] != "end":
        raise TransientError(f"{node}: incomplete answer about a move's state: "
                             f"{' '.join(state_words)[-120:]!r}")
    now, prepared, running, until = state_words[1:5]
    if prepared == "-":
        raise PermanentError(f"{node}: the move's state has no 'prepared' mark; keeping the "
                             "source area (retention cannot be counted)")
    try:
        return Due(now=int(now), forward_until=int(until),
                   retire_at=int(prepared) + retention_hours * 3600, source_was_running=running == "1")
    except ValueError as exc:
        raise TransientError(f"{node}: unreadable answer about a move's state: {exc}") from exc
