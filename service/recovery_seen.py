"""What each node was last seen holding, so a dead node's containers are still known.

    current_inventory (every ``ferry inventory``, plan, job, ``ferry serve`` cycle)
        --remember--> seen_containers: per online node, its containers' lasting facts
                      (replaced when they change; an offline node keeps its last record)
    plan_recovery of a dead node --last_seen--> its containers, even where the backend cannot
        list a dead node's guests (OpenVZ: only the node knew them); the ones without a backup are
        then listed as unrecoverable instead of being unknown

Only what lasts is kept (no usage figures), so an unchanged fleet writes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, String, select
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from fleet.model import Container, Inventory
from service.recovery_facts import facts_to_remember
from service.store import Base, utcnow


class SeenContainerRow(Base):
    """A container as last seen on a node that was online then."""

    __tablename__ = "seen_containers"
    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    ct: Mapped[str] = mapped_column(String(64), primary_key=True)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def remember(sessions: sessionmaker, inv: Inventory) -> None:
    """Record every online node's containers (what changed only); offline nodes keep theirs."""
    online, now = facts_to_remember(inv)
    with sessions() as session:
        rows = session.scalars(select(SeenContainerRow).where(SeenContainerRow.node.in_(online))).all()
        if {(r.node, r.ct): r.facts for r in rows} == now:
            return
    with sessions.begin() as session:
        rows = session.scalars(select(SeenContainerRow).where(SeenContainerRow.node.in_(online))).all()
        for row in rows:
            if (row.node, row.ct) not in now:
                session.delete(row)
            elif row.facts != now[(row.node, row.ct)]:
                row.facts, row.seen_at = now[(row.node, row.ct)], utcnow()
        have = {(r.node, r.ct) for r in rows}
        session.add_all(SeenContainerRow(node=node, ct=ct, facts=facts)
                        for (node, ct), facts in now.items() if (node, ct) not in have)


def last_seen(sessions: sessionmaker, node: str) -> list[Container]:
    """The containers ``node`` held when it was last seen online."""
    with sessions() as session:
        rows = session.scalars(select(SeenContainerRow).where(SeenContainerRow.node == node)
                               .order_by(SeenContainerRow.ct)).all()
        return [Container.model_validate({**r.facts, "node": node}) for r in rows]
