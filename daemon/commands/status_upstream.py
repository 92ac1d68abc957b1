"""``drainer status``: what an upstream said about a request it refuses.

A MyInvois 400 that is not about ``pageSize`` carries the upstream's own error text in the
failing worker's ``/readyz`` reason, after ``UPSTREAM_SAID`` as a JSON string
(:mod:`daemon.sources.myinvois.api`); status shows it as ``upstream_error``.
"""

from __future__ import annotations

import json
from typing import Any

from daemon.sources.myinvois.api import UPSTREAM_SAID


def upstream_lines(report: dict[str, Any]) -> str:
    """One line per account whose upstream refuses a request, with what it said (unwrapped)."""
    return "".join(
        f"\n{account['source']} {account['account']}: upstream said: {account['upstream_error']}"
        for account in report["accounts"]
        if account.get("upstream_error")
    )


def upstream_said(failing: dict[str, str], prefix: str) -> str | None:
    """The upstream's error text quoted in a failing worker's reason (``UPSTREAM_SAID``)."""
    decoder = json.JSONDecoder()
    for name, why in failing.items():
        at = why.find(UPSTREAM_SAID) if name.startswith(prefix) else -1
        if at >= 0:
            try:
                said, _ = decoder.raw_decode(why, at + len(UPSTREAM_SAID))
            except ValueError:
                continue
            if isinstance(said, str):
                return said
    return None
