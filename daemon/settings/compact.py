"""``[[myinvois_client]]``: many taxpayers of one intermediary without repeating its settings.

::

    [[myinvois_client]]
    base_url = "https://api.myinvois.hasil.gov.my"
    client_id = "intermediary-client-id"
    client_secret_file = "myinvois-agent-secret"
    requests_per_minute = 12
    taxpayers = [
      { name = "globex", on_behalf_of = "C2345678901" },
      { name = "initech", on_behalf_of = "C3456789012", interval = "5m" },
    ]

is read as one ``[[myinvois]]`` account per taxpayer: the client's keys, then the
taxpayer's (which win). :func:`expand` runs on the raw TOML before validation and
remembers where each account came from, so an error names the file's key
(``myinvois_client[0].taxpayers[1].on_behalf_of``), not the expanded account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KEY = "myinvois_client"
PER_TAXPAYER = ("name", "on_behalf_of")  # set on each taxpayer, never on the client


@dataclass(frozen=True)
class Origin:
    """Where an expanded ``myinvois[index]`` came from."""

    client: str  # "myinvois_client[0]"
    taxpayer: str  # "myinvois_client[0].taxpayers[1]"
    taxpayer_keys: frozenset[str]

    def key(self, name: str) -> str:
        return f"{self.taxpayer if name in self.taxpayer_keys else self.client}.{name}"


class CompactError(ValueError):
    """The compact form itself is malformed; the message names the key."""


def expand(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[int, Origin]]:
    """``raw`` with every ``[[myinvois_client]]`` turned into ``[[myinvois]]`` accounts."""
    clients = raw.get(KEY)
    if clients is None:
        return raw, {}
    if not isinstance(clients, list) or not all(isinstance(c, dict) for c in clients):
        raise CompactError(f"{KEY}: must be an array of tables ([[{KEY}]])")
    accounts = list(raw.get("myinvois", []))
    origins: dict[int, Origin] = {}
    for i, client in enumerate(clients):
        where = f"{KEY}[{i}]"
        for key in PER_TAXPAYER:
            if key in client:
                raise CompactError(f"{where}.{key}: set it on each taxpayer, not on the client")
        taxpayers = client.get("taxpayers")
        if not isinstance(taxpayers, list) or not taxpayers:
            raise CompactError(f"{where}.taxpayers: a non-empty list of {{name, on_behalf_of}}")
        shared = {key: value for key, value in client.items() if key != "taxpayers"}
        for j, taxpayer in enumerate(taxpayers):
            if not isinstance(taxpayer, dict):
                raise CompactError(f"{where}.taxpayers[{j}]: must be a table {{name = ...}}")
            origins[len(accounts)] = Origin(
                where, f"{where}.taxpayers[{j}]", frozenset(map(str, taxpayer))
            )
            accounts.append({**shared, **taxpayer})
    expanded = {key: value for key, value in raw.items() if key != KEY}
    expanded["myinvois"] = accounts
    return expanded, origins


_ACCOUNT = re.compile(r"myinvois\[(\d+)\](?:\.([a-z_]+))?")


def blame(message: str, origins: dict[int, Origin]) -> str:
    """``message`` with each expanded ``myinvois[i](.key)`` named as the file wrote it."""
    if not origins:
        return message

    def name(match: re.Match[str]) -> str:
        origin = origins.get(int(match.group(1)))
        if origin is None:
            return match.group(0)
        key = match.group(2)
        return origin.key(key) if key else origin.taxpayer

    return _ACCOUNT.sub(name, message)
