"""A fresh database per test on the session's PostgreSQL cluster, so that the jobs and containers
one test stores never meet another's."""

from __future__ import annotations

import re

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def fresh_database(cluster_url: str, name: str) -> str:
    """Create database ``name`` (made safe as an identifier) on the cluster; its SQLAlchemy URL."""
    safe = re.sub(r"[^a-z0-9_]", "_", name.lower())[:60]
    admin = create_engine(cluster_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{safe}"'))
            conn.execute(text(f'CREATE DATABASE "{safe}"'))
    finally:
        admin.dispose()
    return make_url(cluster_url).set(database=safe).render_as_string(hide_password=False)
