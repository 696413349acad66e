"""Who may do what: users with their own API tokens and a role, and who did each job control.

    ferry user add NAME --role R --> new_token() shown once; only sha256(token) is stored
    request token --sha256--> UserRow (not revoked) --> Identity(name, role)
        the configured shared token ([api] token_file / FERRY_API_TOKEN) --> Identity(SHARED_TOKEN_USER, admin)
    approve / pause / resume / cancel --record_action--> ActionRow (job, action, actor, UTC time)

A token is 32 random bytes (256 bits), so a plain SHA-256 of it is as safe as a slow hash would be
for a password: nobody can search a 2^256 space, and a lookup costs one hash, not 100 ms of scrypt
per request. The stored hash is still compared in constant time after the lookup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from fleet.errors import InputError
from service.roles import Role
from service.store import Base, utcnow

#: The identity of the single shared token ferry had before users existed: an admin, so that
#: scripts and configurations written for it keep working unchanged.
SHARED_TOKEN_USER = "shared-token"

#: A user name: what journals and `job show` print, so short and plain.
NAME_PATTERN = r"^[a-z][a-z0-9._-]{0,62}$"


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role

    def allows(self, needed: Role) -> bool:
        return self.role.allows(needed)


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    #: sha256 of the token, hex: never the token itself.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ActionRow(Base):
    """One operator decision on a job: who, what, when (UTC)."""

    __tablename__ = "job_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def new_token() -> str:
    """A fresh API token: a recognisable prefix and 256 random bits."""
    return "ferry_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(name: str) -> None:
    if not re.fullmatch(NAME_PATTERN, name):
        raise InputError("name", name, "a user name is lower-case letters, digits, '.', '_' or '-', "
                         "starting with a letter, at most 63 characters")
    if name == SHARED_TOKEN_USER:
        raise InputError("name", name, "is the name of the configured shared token")


class UserExists(InputError):
    """The name is taken (a user's name keeps meaning one person in the record of who did what)."""


class NoSuchUser(InputError):
    """No user of that name."""


def add_user(sessions: sessionmaker[Session], name: str, role: Role) -> str:
    """Create a user and return its token (shown once: only its hash is kept)."""
    _check_name(name)
    token = new_token()
    with sessions.begin() as session:
        if session.scalar(select(UserRow).where(UserRow.name == name)) is not None:
            raise UserExists("name", name, "a user of that name exists; revoke it first or choose another")
        session.add(UserRow(name=name, role=role.value, token_hash=hash_token(token)))
    return token


def revoke_user(sessions: sessionmaker[Session], name: str) -> None:
    """The user's token stops working at once, and so do its console sessions. The row stays, so
    the name keeps meaning the same person in the record of who did what."""
    from service.web.sessions import end_sessions_of

    with sessions.begin() as session:
        row = session.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise NoSuchUser("name", name, "no such user")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        end_sessions_of(session, name)


def list_users(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(select(UserRow).order_by(UserRow.name))
        return [{"name": r.name, "role": r.role, "created_at": r.created_at.isoformat() + "Z",
                 "revoked_at": r.revoked_at.isoformat() + "Z" if r.revoked_at else None} for r in rows]


def identify(sessions: sessionmaker[Session], token: str, shared: str | None) -> Identity | None:
    """The identity a bearer token stands for, or None (unknown, revoked, or empty)."""
    if not token:
        return None
    if shared is not None and hmac.compare_digest(token.encode(), shared.encode()):
        return Identity(SHARED_TOKEN_USER, Role.admin)
    digest = hash_token(token)
    with sessions() as session:
        row = session.scalar(select(UserRow).where(UserRow.token_hash == digest))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return Identity(row.name, Role(row.role))


def user_is_active(session: Session, name: str) -> bool:
    """Whether a console session of ``name`` still stands (the shared token's always does)."""
    if name == SHARED_TOKEN_USER:
        return True
    row = session.scalar(select(UserRow).where(UserRow.name == name))
    return row is not None and row.revoked_at is None


def cli_actor() -> str:
    """Who runs a CLI command: the login name, marked as the command line's."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a bare container)
        import os

        return f"cli:uid{os.getuid()}"


def record_action(sessions: sessionmaker[Session], job_id: int, action: str, actor: str) -> None:
    with sessions.begin() as session:
        session.add(ActionRow(job_id=job_id, action=action, actor=actor))


def job_actions(sessions: sessionmaker[Session], job_id: int) -> list[dict[str, Any]]:
    """Who approved, paused, resumed, rejected or cancelled the job, oldest first."""
    with sessions() as session:
        rows = session.scalars(select(ActionRow).where(ActionRow.job_id == job_id).order_by(ActionRow.id))
        return [{"action": r.action, "by": r.actor, "at": r.at.isoformat() + "Z"} for r in rows]
