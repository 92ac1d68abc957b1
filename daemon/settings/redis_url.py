"""What a ``[redis] url`` names (one node, Sentinel or Cluster), parsed without a client.

Pure: used by the settings validators and by :mod:`daemon.sink.connect`. A ValueError
message is one line and never shows a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True, slots=True)
class Target:
    """What a url names, before any setting is applied."""

    kind: str  # "single" | "sentinel" | "cluster"
    tls: bool
    hosts: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None


def scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def parse_url(url: str) -> Target:
    """Parse a ``[redis] url``; a ValueError message is one line and never shows a secret."""
    kind = scheme(url)
    if kind in SINGLE_SCHEMES:
        return Target("single", tls=kind == "rediss")
    if kind not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        raise ValueError(
            "must start with redis://, rediss://, unix://, redis+sentinel://, "
            "rediss+sentinel://, redis+cluster:// or rediss+cluster://"
        )
    # urlsplit cannot read "h1:p1,h2:p2" as a netloc port: split the host list ourselves.
    rest = url.partition("://")[2]
    netloc, _, path = rest.partition("/")
    path = path.partition("?")[0]
    credentials, _, hostlist = netloc.rpartition("@")
    username, password = _credentials(credentials)
    hosts = tuple(parse_host(item) for item in hostlist.split(",") if item.strip())
    if not hosts:
        raise ValueError("needs at least one host:port")
    parts = [part for part in path.split("/") if part]
    tls = kind.startswith("rediss")
    if kind in SENTINEL_SCHEMES:
        if not parts or len(parts) > 2:
            raise ValueError("a sentinel url is redis+sentinel://host:port,.../<master>/<db>")
        return Target(
            "sentinel", tls, hosts, unquote(parts[0]), db_number(parts[1:]), username, password
        )
    if db_number(parts) != 0:
        raise ValueError("Redis Cluster has only database 0")
    return Target("cluster", tls, hosts, None, 0, username, password)


def parse_host(item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError("hosts must be host:port")
    return host.strip("[]"), int(port)


def _credentials(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, sep, password = text.partition(":")
    if not sep:
        return None, unquote(user) or None  # "redis+cluster://secret@h:p" = password only
    return unquote(user) or None, unquote(password) or None


def db_number(parts: list[str]) -> int:
    if not parts:
        return 0
    if not parts[0].isdigit():
        raise ValueError("the database must be a number")
    return int(parts[0])


def url_password(url: str) -> str | None:
    """The password a url carries: ``user:pw@``, a password-only ``pw@`` (Sentinel,
    Cluster) or a ``?password=`` option; None when it has none (or cannot be parsed)."""
    for key, value in parse_qsl(urlsplit(url).query):
        if key == "password" and value:
            return value
    try:
        target = parse_url(url)
        if target.kind != "single":
            return target.password
        return unquote(urlsplit(url).password or "") or None
    except ValueError:
        return None


def redact_url(url: str) -> str:
    """Every password in a url replaced by ``***``: ``user:pw@``, a password-only ``pw@``
    (``redis+sentinel://``, ``redis+cluster://``) and ``?password=`` / ``&password=``."""
    kind = scheme(url)
    if kind in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        # Sentinel and Cluster read "secret@host" as a password alone.
        url = re.sub(r"^([^:]+://)(?:([^/@:]*):)?[^/@]*@", _redact_userinfo, url)
    else:
        url = re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


def _redact_userinfo(match: re.Match[str]) -> str:
    user = match.group(2)
    return f"{match.group(1)}{user}:***@" if user is not None else f"{match.group(1)}***@"
