"""Bearer tokens (expiry in sandbox time) and DocPlanner's token endpoint.

DocPlanner (``POST /oauth/v2/token``): client id and secret as HTTP Basic (or form
fields, as the PHP SDK sends them), ``grant_type=client_credentials``,
``scope=integration``; answers ``{"access_token", "expires_in", "token_type": "bearer",
"scope": null}``. MyInvois's ``/connect/token`` is in :mod:`daemon.sandbox.identity`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qs

from daemon.sandbox.server import Request, Response, json_body

TokenState = Literal["ok", "expired", "invalid"]


class TokenStore:
    """token -> (client id, expiry in sandbox seconds, subject); thread-safe.

    The subject is what the token was bound to at login (MyInvois: a taxpayer's TIN).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._subjects: dict[str, str | None] = {}

    def issue(self, client_id: str, ttl: float, now: float, subject: str | None = None) -> str:
        token = secrets.token_hex(24)
        with self._lock:
            self._tokens[token] = (client_id, now + ttl)
            self._subjects[token] = subject
        return token

    def subject(self, token: str) -> str | None:
        """What the token was bound to at login (None: nothing)."""
        with self._lock:
            return self._subjects.get(token)

    def check(self, token: str | None, now: float) -> tuple[str | None, TokenState]:
        """The client id owning a live token, else ``(None, "expired" | "invalid")``."""
        if not token:
            return None, "invalid"
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                return None, "invalid"
            client_id, expires_at = entry
            if now >= expires_at:
                del self._tokens[token]
                return None, "expired"
        return client_id, "ok"

    def expire_all(self) -> None:
        """Every issued token expires now (its next use gets 401, "expired")."""
        with self._lock:
            self._tokens = {token: (owner, 0.0) for token, (owner, _) in self._tokens.items()}


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def basic(authorization: str | None) -> tuple[str, str] | None:
    """``(user, password)`` of an ``Authorization: Basic ...`` header, else None."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _credentials(request: Request, form: Mapping[str, list[str]]) -> tuple[str, str] | None:
    if "client_id" in form:
        return form["client_id"][0], form.get("client_secret", [""])[0]
    return basic(request.header("Authorization"))


def _oauth(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})}
    return Response(status, json_body(body), "application/json", headers)


def docplanner_token(
    request: Request, known: Mapping[str, str], store: TokenStore, ttl: float, now: float
) -> Response:
    """``known`` maps client id -> secret.

    [G] https://integrations.docplanner.com/guide/fundamentals/authorization.html:
    ``curl -u {client_id}:{client_secret} .../oauth/v2/token -d
    'grant_type=client_credentials&scope=integration'``; form credentials as the PHP SDK
    (DocPlanner/integrations-api-sdk-php ``lib/Authorization.php``) sends them.
    """
    form = parse_qs(request.body.decode("utf-8", "replace"))
    creds = _credentials(request, form)
    grant, scope = form.get("grant_type", [None])[0], form.get("scope", [None])[0]
    if grant is None:
        text = "Invalid grant_type parameter or parameter missing"
        return _oauth(400, {"error": "invalid_request", "error_description": text})
    if creds is None or known.get(creds[0]) != creds[1]:
        text = "The client credentials are invalid"
        challenge = {"WWW-Authenticate": 'Basic realm="Service"'}
        return _oauth(401, {"error": "invalid_client", "error_description": text}, challenge)
    if grant != "client_credentials":
        text = "The grant type is unauthorized for this client_id"
        return _oauth(400, {"error": "unauthorized_client", "error_description": text})
    if scope not in (None, "integration"):
        text = "An unsupported scope was requested."
        return _oauth(400, {"error": "invalid_scope", "error_description": text})
    token = store.issue(creds[0], ttl, now)
    body: dict[str, Any] = {"access_token": token, "expires_in": int(ttl), "token_type": "bearer"}
    return _oauth(200, {**body, "scope": None})
