"""The DocPlanner sandbox's wire: paths, media types, the error shape, rate headers, faults.

Sources as in :mod:`daemon.sandbox.docplanner`: the official OpenAPI "Docplanner
Integrations API" 1.14.0 ([OAS]) and the guide at https://integrations.docplanner.com/guide/
([G]). Each behaviour below names its source.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from daemon.sandbox.clock import iso_utc_offset
from daemon.sandbox.faults import RETRY_AFTER_SECONDS
from daemon.sandbox.push import TOKEN_HEADER
from daemon.sandbox.ratelimit import SlidingWindow
from daemon.sandbox.server import Response, json_body, waf_response

API_PREFIX = "/api/v3/integration"
TOKEN_PATH = "/oauth/v2/token"  # noqa: S105 - a URL path, not a secret
# [C SPEC Fundamentals] (docplanner-api-notes.md §5): the push source addresses, published
# at https://www.{domain}/public/docs/public-ips.json as {"API": [...]}.
PUBLIC_IPS_PATH = "/public/docs/public-ips.json"
MEDIA_TYPE = "application/vnd.docplanner+json"
ERROR_TYPE = "application/vnd.error+docplanner+json"
EXPIRY_SECONDS = 72 * 3600  # [OAS]: "not pulled in 72 hours are marked as expired and deleted"
RELEASE_INTERVAL = 3600  # [OAS] release: "allows to perform notifications release once per hour"
_REASONS = {"500": "Internal Server Error", "503": "Service Unavailable"}


@dataclass(frozen=True)
class DocPlannerClient:
    """One OAuth client; ``push_url`` set means DocPlanner pushes to it (release allowed).

    ``enabled`` False: an API client "not enabled" ([OAS] release 403), until
    :meth:`DocPlannerSandbox.set_enabled` enables it.
    """

    client_id: str
    client_secret: str
    push_url: str | None = None
    push_token: str | None = None
    push_header: str = TOKEN_HEADER  # the header agreed for the API key [C G-PVP]
    enabled: bool = True


@dataclass
class Account:
    client: DocPlannerClient
    window: SlidingWindow
    queue: deque[tuple[float, Any, bytes | None]] = field(default_factory=deque)
    handed_out: list[Any] = field(default_factory=list)
    lost: list[Any] = field(default_factory=list)
    expired: list[Any] = field(default_factory=list)
    last_release: float | None = None


def error(
    status: int, message: str, headers: dict[str, str] | None = None, errors: Any = None
) -> Response:
    """DocPlanner's error shape: ``{"errors": [...] or {...}, "message": "..."}``.

    [G] /guide/fundamentals/errors.html: errors carry ``application/vnd.error+docplanner+json``.
    """
    body = {"errors": [] if errors is None else errors, "message": message}
    return Response(status, json_body(body), ERROR_TYPE, dict(headers or {}))


def rate_headers(window: SlidingWindow, now: float) -> dict[str, str]:
    """[OAS] Fundamentals, [G] rate-limits: X-RateLimit-Limit/-Remaining/-Used, and
    X-RateLimit-Reset "in ISO8601 format"."""
    return {
        "X-RateLimit-Limit": str(window.limit),
        "X-RateLimit-Remaining": str(window.remaining(now)),
        "X-RateLimit-Used": str(window.used(now)),
        "X-RateLimit-Reset": iso_utc_offset(window.reset_at(now)),
    }


def expire(account: Account, now: float) -> None:
    """[OAS]: notifications "not pulled in 72 hours are marked as expired and deleted"."""
    while account.queue and account.queue[0][0] <= now - EXPIRY_SECONDS:
        account.expired.append(account.queue.popleft()[1])


def fault_response(kind: str | None, headers: dict[str, str], now: float) -> Response | None:
    """The refusal a drawn fault makes of a pull (None: the pull goes on)."""
    if kind in ("500", "503"):
        return error(int(kind), _REASONS[kind], headers)  # [G] errors: 5xx
    if kind == "waf":
        # Not documented by DocPlanner (SPEC §1: WAF challenges, 405 with an HTML body).
        return waf_response()
    if kind == "400":
        # [G] errors: "400 - Bad Request"; on a pull: docs silent (a refusal that stops).
        return error(400, "Bad request", headers)
    if kind == "403":
        # Pull operations document only 200 and 404; the OpenAPI's Fundamentals give
        # "403 - Forbidden: You don't have the access rights to perform this action"
        # with the vnd.error body (docs silent on pulls: a refusal that later stops).
        return error(403, "You don't have the access rights to perform this action", headers)
    if kind == "429":
        full = {"X-RateLimit-Remaining": "0", "X-RateLimit-Used": headers["X-RateLimit-Limit"]}
        full["X-RateLimit-Reset"] = iso_utc_offset(now + RETRY_AFTER_SECONDS)
        return error(429, "Too many requests", {**headers, **full})
    return None


def pull_response(
    items: list[Any],
    popped: list[tuple[float, Any, bytes | None]],
    remaining: int,
    headers: dict[str, str],
    *,
    multiple: bool,
    kind: str | None,
) -> Response:
    """A pull's 200: the popped ``items`` (pre-encoded where the queue kept their bytes)."""
    action: Literal["send", "truncate"] = "truncate" if kind == "truncate" else "send"
    content_type = f"{MEDIA_TYPE}; charset=UTF-8"
    encoded = [raw for _, _, raw in popped if raw is not None] if multiple else []
    if encoded and kind != "malformed" and len(encoded) == len(items):
        # [OAS] PullMultipleNotificationsResponse: the same bytes, joined pre-encoded.
        body = b"".join((b'{"notifications":[', b",".join(encoded), b'],"remaining":'))
        return Response(200, body + b"%d}" % remaining, content_type, headers, action=action)
    # [OAS] PullMultipleNotificationsResponse {notifications, remaining}; single: one object.
    document = {"notifications": items, "remaining": remaining} if multiple else items[0]
    return Response(200, json_body(document), content_type, headers, action=action)
