"""DocPlanner Integrations API client of one account: token, pull, release (SPEC §1).

A 404 on a pull means "queue empty" only with the documented body ([OAS] example
``NotificationNotFound``: ``{"errors": [], "message": "No notifications found"}``); any
other 404 (another message, an HTML page, a wrong ``base_url``) is :class:`NotFoundError`.

Timeouts: a pull's answer holds up to 100 notifications already removed upstream, so its
read timeout is :data:`PULL_READ_TIMEOUT` (60 s), not the 10 s of the other calls: a slow
answer abandoned is a batch lost for good. DocPlanner documents no latency; 60 s is six
times the other calls' read timeout, yet short enough that a hung connection is given up
within a minute and the account retries (with backoff).
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
import structlog

from daemon.envelope.codec import loads
from daemon.errors import (
    AuthError,
    ForbiddenError,
    NotFoundError,
    TransientError,
)
from daemon.settings import DocPlannerAccount
from daemon.sources.http import CONNECT_TIMEOUT, TokenCache, UpstreamClient, token_from

log = structlog.get_logger("daemon.sources.docplanner.api")

MEDIA_TYPE = "application/vnd.docplanner+json"
ACCEPT = f"{MEDIA_TYPE}; charset=UTF-8,application/vnd.error+docplanner+json"
PULL_READ_TIMEOUT = 60.0  # destructive: see the module docstring
EMPTY_QUEUE_MESSAGE = "No notifications found"  # [OAS] 404 example NotificationNotFound


def is_empty_queue(body: bytes) -> bool:
    """True only for the documented empty-queue 404 body.

    Tolerant only where the documents are: any JSON spacing and key order, and ``errors``
    as an empty list or an empty object (the Error schema's ``errors`` is either). Another
    message, another key, an HTML page or no JSON at all is not an empty queue.
    """
    try:
        document = loads(body)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(document, dict)
        and set(document) == {"errors", "message"}
        and document["message"] == EMPTY_QUEUE_MESSAGE
        and document["errors"] in ([], {})
    )


def describe_not_found(response: requests.Response) -> str:
    """A short, safe description of an unexpected 404 (never the body's text)."""
    kind = (response.headers.get("Content-Type") or "no content type").split(";")[0].strip()
    kind = "".join(ch if ch.isprintable() else "?" for ch in kind[:60])
    return f"{kind}, {len(response.content)} bytes"


@dataclass(frozen=True, slots=True)
class PullResponse:
    """``body`` is None when the queue is empty (404 "No notifications found")."""

    body: bytes | None


class DocPlannerApi:
    """Token, pull and release calls of one DocPlanner client."""

    def __init__(self, account: DocPlannerAccount, http: UpstreamClient) -> None:
        self.account = account
        self.http = http
        self.api_url = f"{account.base_url}/api/v3/integration"
        self.token_url = f"{account.base_url}/oauth/v2/token"
        self.tokens = TokenCache(self._fetch_token, http.clock)

    def _fetch_token(self) -> tuple[str, float]:
        response = self.http.send(
            "POST",
            self.token_url,
            "token",
            data={"grant_type": "client_credentials", "scope": "integration"},
            auth=(self.account.client_id, self.account.secret()),
        )
        return token_from(response, f"docplanner {self.account.name}")

    def _authorized(
        self,
        method: str,
        path: str,
        endpoint: str,
        accept: str,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send with a bearer token; on 401 refresh the token once and retry."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.tokens.get()}", "Accept": accept}
            url = f"{self.api_url}{path}"
            response = self.http.send(method, url, endpoint, headers=headers, timeout=timeout)
            if response.status_code == 401 and attempt == 1:
                self.tokens.invalidate()
                continue
            if response.status_code == 401:
                raise AuthError(f"docplanner {self.account.name}: 401 after a fresh token")
            return response
        raise AssertionError("unreachable")

    def pull(self, limit: int) -> PullResponse:
        limit = min(max(limit, 1), 100)
        response = self._authorized(
            "GET",
            f"/notifications/multiple?limit={limit}",
            "notifications",
            ACCEPT,
            (CONNECT_TIMEOUT, PULL_READ_TIMEOUT),
        )
        code = response.status_code
        if code == 200:
            return PullResponse(response.content)
        name = self.account.name
        if code == 404:
            if is_empty_queue(response.content):
                return PullResponse(None)
            raise NotFoundError(
                f"docplanner {name}: pull answered a 404 that is not the empty queue "
                f"({describe_not_found(response)}): check base_url"
            )
        if code == 403:
            raise ForbiddenError(f"docplanner {name}: 403 on pull")
        raise TransientError(f"docplanner {name}: pull answered {code}")

    def release(self) -> int:
        """``POST /notifications/release``: returns 204 or 403 (429 raises)."""
        response = self._authorized(
            "POST", "/notifications/release", "release", "application/vnd.error+docplanner+json"
        )
        return 200 if response.status_code == 200 else response.status_code
