"""``DRAINER_`` environment overrides, applied over the TOML file before validation.

- ``DRAINER_<SECTION>__<KEY>`` sets a key of a table: ``DRAINER_REDIS__URL``,
  ``DRAINER_SERVER__LISTEN``, ``DRAINER_REDIS__SENTINEL__MASTER`` (``__`` goes one level down).
- ``DRAINER_DOCPLANNER__<NAME>__<KEY>`` and ``DRAINER_MYINVOIS__<NAME>__<KEY>`` set a key of
  the account named ``NAME`` in the file (matched without regard to case, ``-`` in a name
  written ``_``): ``DRAINER_DOCPLANNER__PL__CLIENT_SECRET_FILE=pl-secret``. The account must
  be in the file; the environment changes accounts, it does not add them.
- A value is a string, read like the file's (numbers, ``true``/``false``, ``"5s"``); one
  that starts with ``[`` or ``{`` is JSON (``DRAINER_REDIS__SENTINEL__HOSTS='["h:26379"]'``).
- Names are not case-sensitive. ``DRAINER_CONFIG`` (the file's path) and variables whose
  first part is not a section of the config are not overrides.

Each override remembers its variable, so a bad value is blamed on the variable, not the file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError

PREFIX = "DRAINER_"
SECTIONS = ("redis", "streams", "spool", "server", "runtime", "log")
ACCOUNT_KINDS = ("docplanner", "myinvois")

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Override:
    """One ``DRAINER_`` variable: where its value lands in the raw config."""

    variable: str
    loc: Loc
    value: Any


def env_overrides(raw: Mapping[str, Any], environ: Mapping[str, str], path: Path) -> list[Override]:
    """Every override in ``environ``, located in ``raw`` (the file); a bad name is a ConfigError."""
    found = []
    for variable in sorted(environ):
        if not variable.upper().startswith(PREFIX):
            continue
        parts = variable[len(PREFIX) :].lower().split("__")
        if parts[0] not in (*SECTIONS, *ACCOUNT_KINDS):
            continue  # DRAINER_CONFIG, or not ours
        if "" in parts:
            raise ConfigError(f"environment {variable}: empty part between '__'")
        loc: Loc = tuple(parts)
        if parts[0] in ACCOUNT_KINDS and len(parts) > 1:
            loc = _account_loc(variable, parts, raw, path)
        found.append(Override(variable, loc, _value(variable, environ[variable])))
    return found


def _account_loc(variable: str, parts: Sequence[str], raw: Mapping[str, Any], path: Path) -> Loc:
    kind, name, keys = parts[0], parts[1], parts[2:]
    if not keys:
        raise ConfigError(
            f"environment {variable}: name a key, as in {PREFIX}{kind.upper()}__<ACCOUNT>__<KEY>"
        )
    accounts = raw.get(kind, [])
    indexes = [
        index
        for index, account in enumerate(accounts if isinstance(accounts, list) else [])
        if isinstance(account, dict)
        and str(account.get("name", "")).lower().replace("-", "_") == name
    ]
    if not indexes:
        raise ConfigError(f"environment {variable}: no [[{kind}]] account named {name!r} in {path}")
    if len(indexes) > 1:
        raise ConfigError(f"environment {variable}: {name!r} matches more than one [[{kind}]]")
    return (kind, indexes[0], *keys)


def _value(variable: str, text: str) -> Any:
    if not text.lstrip().startswith(("[", "{")):
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError(
            f"environment {variable}: value starts with [ or {{ but is not JSON"
        ) from None


def apply(raw: Mapping[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    """A copy of ``raw`` with every override set (the environment wins over the file)."""
    merged: dict[str, Any] = copy.deepcopy(dict(raw))
    for override in overrides:
        node: Any = merged
        for part in override.loc[:-1]:
            if isinstance(node, dict) and isinstance(part, str):
                node = node.setdefault(part, {})
            elif isinstance(node, list) and isinstance(part, int):
                node = node[part]
            else:
                node = None
                break
        if not isinstance(node, dict):
            raise ConfigError(
                f"environment {override.variable}: {_key(override.loc[:-1])} is not a table"
            )
        node[override.loc[-1]] = override.value
    return merged


def blame(
    loc: Loc, overrides: Sequence[Override], raw: Mapping[str, Any]
) -> tuple[Override | None, bool]:
    """The override a validation error at ``loc`` comes from, and whether only it is to blame.

    An error inside what a variable set, or on a table only the variable created, is the
    variable's alone (True); an error on a table of the file that a variable changed (e.g.
    "set exactly one of client_secret or client_secret_file") involves both (False).
    """
    for override in overrides:
        if loc[: len(override.loc)] == override.loc:
            return override, True
    for override in overrides:
        if loc and override.loc[: len(loc)] == loc:
            return override, not _in_file(raw, loc)
    return None, False


def _in_file(raw: Mapping[str, Any], loc: Loc) -> bool:
    node: Any = raw
    for part in loc:
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            continue
        if not (isinstance(node, dict) and part in node):
            return False
        node = node[part]
    return True


def _key(loc: Loc) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key
