"""The roles a user of the REST API and the console may hold, in their own module: the CLI's
option definitions need them without importing the job store.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Ordered: each role may do everything the roles before it may."""

    viewer = "viewer"      # read the fleet, plans and jobs
    operator = "operator"  # plan, approve, reject, pause, resume, cancel
    admin = "admin"        # users and configuration

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank
