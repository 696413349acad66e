"""Alembic environment for ferry's job store. ferry runs migrations itself on start
(:func:`service.store.open_database`), passing its connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from service.store import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic` run by hand: take the URL from the ini / -x url=...
    from sqlalchemy import create_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    connection = create_engine(url).connect()

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
