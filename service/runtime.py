"""Wiring: from a Config to a backend, a job store, a policy and an engine.

The only place that knows which backend module serves which ``ferry.backend`` name; the CLI and
the REST API both build what they need here.
"""

from __future__ import annotations

import datetime as dt
import importlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from adapters.base import Backend
from fleet.policy import Policy
from service.config import Config

if TYPE_CHECKING:  # the engine (threads, sagas, claims) loads when a job runs, not for every command;
    # the job store (SQLAlchemy) and dnspython when a command first uses them (``ferry inventory``
    # reads an unchanged store without them: service/operations/listing.py)
    from sqlalchemy.orm import Session, sessionmaker

    from service.engine import Engine
    from service.saga import Progress


def make_backend(config: Config) -> Backend:
    backend = importlib.import_module(f"adapters.{config.backend}").create_backend(config.backend_settings())
    if not config.dns.server:  # nothing to attach: dnspython is not imported for nothing
        return backend
    from service.dns import attach_records

    return attach_records(backend, config)


@dataclass
class Runtime:
    config: Config

    @cached_property
    def backend(self) -> Backend:
        if self.config.backend == "sim":  # the world lives in the state directory
            self.config.make_state_dir()
        return make_backend(self.config)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        if self.config.database_url.startswith("sqlite:///"):
            self.config.make_state_dir()
        from service.store import open_database

        return open_database(self.config.database_url)

    def policy(self) -> Policy:
        """Config policy, with link speeds learned from finished moves filling in the gaps."""
        from service.jobs import learned_links

        learned = learned_links(self.sessions)
        if not learned:
            return self.config.policy
        links = {**learned, **self.config.policy.link_mb_s}
        return self.config.policy.model_copy(update={"link_mb_s": links})

    def cooldown_inputs(self) -> tuple[dict[str, dt.datetime], dt.datetime]:
        """Last-moved times and 'now' on the world's clock, for the rebalancer's cooldown."""
        from service.jobs import last_moved

        def stamp(seconds: float) -> dt.datetime:
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        moved = {ct: stamp(t) for ct, t in last_moved(self.sessions).items()}
        return moved, stamp(self.backend.now())

    def engine(self, progress: Progress | None = None) -> Engine:
        from service.engine import Engine

        return Engine(self.sessions, self.backend, self.policy(), self.config.engine,
                      owner=self.config.ferry.instance or None, progress=progress)
