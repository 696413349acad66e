"""Console sessions: a token typed once at the login page becomes an HttpOnly cookie.

    POST /login (token) --service.users.identify--> open_session: random id (cookie) + CSRF token
        stored as sha256(id) in the job store, so every ``ferry serve`` instance sees it and a
        stolen copy of the store holds no usable cookie
    request cookie --session_of--> Identity + CSRF token, while unexpired and the user not revoked

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends
it) and, behind HTTPS, ``Secure``; every POST also carries the session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import DateTime, String, delete
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from service.store import Base, utcnow
from service.users import Identity, Role, user_is_active

COOKIE = "ferry_session"
#: How long a console session lasts without a new login.
SESSION_HOURS = 12


class ConsoleSessionRow(Base):
    __tablename__ = "console_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    csrf: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


@dataclass(frozen=True)
class ConsoleSession:
    identity: Identity
    csrf: str


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(sessions: sessionmaker[Session], identity: Identity) -> str:
    """A new session for ``identity``; returns the cookie value. Expired sessions are swept here."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    with sessions.begin() as session:
        session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at < now))
        session.add(ConsoleSessionRow(id_hash=_digest(session_id), user=identity.name, role=identity.role.value,
                                      csrf=secrets.token_urlsafe(32),
                                      expires_at=now + dt.timedelta(hours=SESSION_HOURS)))
    return session_id


def session_of(sessions: sessionmaker[Session], cookie: str | None) -> ConsoleSession | None:
    if not cookie:
        return None
    with sessions() as session:
        row = session.get(ConsoleSessionRow, _digest(cookie))
        if row is None or row.expires_at < utcnow() or not user_is_active(session, row.user):
            return None
        return ConsoleSession(Identity(row.user, Role(row.role)), row.csrf)


def close_session(sessions: sessionmaker[Session], cookie: str | None) -> None:
    if cookie:
        with sessions.begin() as session:
            session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.id_hash == _digest(cookie)))


def end_sessions_of(session: Session, user: str) -> None:
    """Every console session of ``user`` ends (its token was revoked)."""
    session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.user == user))
