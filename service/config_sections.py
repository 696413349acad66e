"""The ``[notify]`` and ``[dns]`` config tables, apart from the code that uses them.

Loading the config (every ``ferry`` command but ``--help``) needs these models only; the code that
sends notifications brings the job store (SQLAlchemy) and the DNS updater brings dnspython, which a
listing verb such as ``ferry jobs`` need not pay for. service.notify and service.dns re-export them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleet.errors import InputError


def redacted(url: str) -> str:
    """What may be shown of an Apprise URL: its scheme only (the rest may hold a secret)."""
    scheme, sep, _rest = url.partition("://")
    return f"{scheme}://(rest hidden)" if sep and scheme.isalnum() else "(hidden)"


class NotifySection(BaseModel):
    """``[notify]``: where ferry tells people what happened (Apprise URLs, https://appriseit.com)."""

    model_config = ConfigDict(extra="forbid")
    #: e.g. ["mailtos://user:pass@example.org", "slack://T/B/C", "json://hooks.example.org/ferry"]
    urls: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("urls")
    @classmethod
    def _apprise_urls(cls, urls: list[str]) -> list[str]:
        # An InputError (not a ValueError) so that pydantic does not quote the URL back.
        import apprise

        for i, url in enumerate(urls):
            if not apprise.Apprise().add(url):
                raise InputError(f"notify.urls[{i}]", redacted(url),
                                 "not an Apprise URL ferry can send to (see https://appriseit.com for the formats)")
        return urls


class DnsSection(BaseModel):
    """The ``[dns]`` table; empty ``server`` means records are left to ``openvz.dns_hook``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    server: str = ""
    port: int = Field(default=53, ge=1, le=65535)
    zone: str = ""
    key_name: str = ""
    key_file: str = ""
    algorithm: str = "hmac-sha256"
    low_ttl_s: int = Field(default=30, ge=0, le=86400)
    names: dict[str, str] = Field(default_factory=dict)
