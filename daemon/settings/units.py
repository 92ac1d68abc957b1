"""Config value syntax: durations, sizes and timestamps (SPEC §4). Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def parse_duration(value: object) -> float:
    """``"250ms"``, ``"5s"``, ``"10m"``, ``"1h"`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '5s', '10m' or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError("expected a duration such as '250ms', '5s', '10m', '1h' or seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: object) -> int:
    """``"512MiB"``, ``"1GiB"`` or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as '512MiB' or a number of bytes")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    else:
        raise ValueError("expected a size such as '512MiB', '1GiB' or a number of bytes")
    if size <= 0:
        raise ValueError("a size must be positive")
    return size


def parse_timestamp(value: object) -> datetime:
    """An RFC 3339 timestamp; a naive one is taken as UTC."""
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("expected an RFC 3339 time such as 2026-11-01T00:00:00Z") from None
    else:
        raise ValueError("expected an RFC 3339 time such as 2026-11-01T00:00:00Z")
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
