"""DocPlanner Integrations API client of one account: token, pull, release (SPEC §1)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from daemon.errors import (
    AuthError,
    ForbiddenError,
    TransientError,
)
from daemon.settings import DocPlannerAccount
from daemon.sources.http import TokenCache, UpstreamClient, token_from

log = structlog.get_logger("daemon.sources.docplanner.api")

MEDIA_TYPE = "application/vnd.docplanner+json"
ACCEPT = f"{MEDIA_TYPE}; charset=UTF-8,application/vnd.error+docplanner+json"


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

    def _authorized(self, method: str, path: str, endpoint: str, accept: str) -> bytes | int:
        """Send with a bearer token; on 401 refresh the token once and retry."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.tokens.get()}", "Accept": accept}
            response = self.http.send(method, f"{self.api_url}{path}", endpoint, headers=headers)
            if response.status_code == 401 and attempt == 1:
                self.tokens.invalidate()
                continue
            if response.status_code == 401:
                raise AuthError(f"docplanner {self.account.name}: 401 after a fresh token")
            if response.status_code == 200:
                return response.content
            return response.status_code
        raise AssertionError("unreachable")

    def pull(self, limit: int) -> PullResponse:
        limit = min(max(limit, 1), 100)
        result = self._authorized(
            "GET", f"/notifications/multiple?limit={limit}", "notifications", ACCEPT
        )
        if isinstance(result, bytes):
            return PullResponse(result)
        if result == 404:
            return PullResponse(None)
        if result == 403:
            raise ForbiddenError(f"docplanner {self.account.name}: 403 on pull")
        raise TransientError(f"docplanner {self.account.name}: pull answered {result}")

    def release(self) -> int:
        """``POST /notifications/release``: returns 204 or 403 (429 raises)."""
        result = self._authorized(
            "POST", "/notifications/release", "release", "application/vnd.error+docplanner+json"
        )
        return 200 if isinstance(result, bytes) else result
