"""A journal that keeps every entry, for tests that call a backend or its client directly."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.base import JournalEntry


@dataclass
class Recorder:
    """A journal that keeps every entry."""

    entries: list[JournalEntry] = field(default_factory=list)

    def __call__(self, entry: JournalEntry) -> None:
        self.entries.append(entry)

    def api(self) -> list[JournalEntry]:
        return [e for e in self.entries if e.kind == "api"]
