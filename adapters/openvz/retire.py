"""What an OpenVZ move's cleanup may do now, and what it leaves for later.

    source node: <state_dir>/<CT>/prepared (mtime), source_running, forward.until
        --STATE_SCRIPT--> "now prepared running until" --due()--> Due(forwarders?, source area?)
    backend.cleanup: stop forwarders if due; retire the source area if due *and* the destination
    still stands; raise CleanupPending(Due.remains) while something is left.

Everything is read from the source node's clock and files, so a cleanup called hours later by
another ferry process (``ferry cleanup``, ``ferry serve``) decides the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

#: Prints "NOW PREPARED RUNNING [UNTIL]" (epoch s, 0/1, epoch s); nothing if the state is gone.
STATE_SCRIPT = ('cd "$1" 2>/dev/null || exit 0; echo $(date +%s) $(stat -c %Y prepared) '
                '$([ -e source_running ] && echo 1 || echo 0) $(cat forward.until 2>/dev/null)')


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


def due(state_words: list[str], retention_hours: float) -> Due:
    """Parse :data:`STATE_SCRIPT`'s output; no state at all means nothing is left to wait for."""
    if len(state_words) < 3:
        return Due(now=1, forward_until=0, retire_at=0, source_was_running=False)
    now, prepared, running = (int(w) for w in state_words[:3])
    until = int(state_words[3]) if len(state_words) > 3 else 0
    return Due(now=now, forward_until=until, retire_at=prepared + retention_hours * 3600,
               source_was_running=running == 1)
