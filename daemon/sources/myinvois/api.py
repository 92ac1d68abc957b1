"""MyInvois Get Notifications client: token, one page, parsing (SPEC §1).

The token comes from ``POST {identity_url}/connect/token`` on the identity service
(client credentials, ``scope=InvoicingAPI``) and is cached for ``expires_in``.
Intermediaries ("Login as Intermediary System") send ``onbehalfof: <TIN>`` on that
token request: the token is then bound to the taxpayer, so the page requests carry
nothing but the bearer token. One API object per account; the token cache is per
(client, TIN) and the budgets per Client ID, both held by the account's
:class:`~daemon.sources.myinvois.shared.SharedClient`.

Answers: 401 refreshes the token once; 403 drops the token (a permission granted since
the login takes effect at the next one) and is :class:`ForbiddenError` (the poller backs
off and retries); a 400 whose error names ``pageSize`` is :class:`PageSizeRefusedError`
(the poller halves its page size); any other 400 is :class:`BadRequestError`, whose
message quotes the upstream's own error text after :data:`UPSTREAM_SAID` (errorCode,
error, propertyName of the standard error response; printable, at most 200 characters)
so that ``/readyz`` and ``drainer status`` show what MyInvois objected to.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from daemon.envelope.codec import loads
from daemon.envelope.salvage import salvage
from daemon.errors import (
    AuthError,
    BadRequestError,
    ForbiddenError,
    PageSizeRefusedError,
    TransientError,
)
from daemon.settings import MyInvoisAccount
from daemon.sources.budget import FairBudget
from daemon.sources.http import UpstreamClient, token_from
from daemon.sources.myinvois.shared import SharedClient

TOKEN_PATH = "/connect/token"  # noqa: S105 - a URL path, not a secret
NOTIFICATIONS_PATH = "/api/v1.0/notifications/taxpayer"
UPSTREAM_SAID = "upstream said: "  # then the upstream's error text as a JSON string
UPSTREAM_TEXT_MAX = 200


class TokenRejectedError(TransientError):
    """A 401 with a cached token: it was dropped; the next tick fetches a fresh one."""


def iso_z(moment: datetime) -> str:
    """The MyInvois date format: UTC, whole seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def whole_seconds(timestamp: float) -> datetime:
    return datetime.fromtimestamp(math.floor(timestamp), tz=UTC)


class MyInvoisApi:
    """Token and Get Notifications calls of one MyInvois client (taxpayer or intermediary)."""

    def __init__(
        self, account: MyInvoisAccount, http: UpstreamClient, shared: SharedClient
    ) -> None:
        self.account = account
        self.http = http
        self.shared = shared
        self.budget: FairBudget = shared.notifications
        self.logins: FairBudget = shared.logins
        self.tokens = shared.tokens_for(account.on_behalf_of or "", self._fetch_token, http.clock)
        self._rejected = False  # the last page request got 401

    def needs_login(self) -> bool:
        """No live token for this (client, TIN): the next call logs in first."""
        return not self.tokens.valid()

    def login(self) -> None:
        """Log in now (the caller has taken the login budget); a live token is kept."""
        self.tokens.get()

    def _fetch_token(self) -> tuple[str, float]:
        headers = {"Accept": "application/json"}
        if self.account.on_behalf_of:
            headers["onbehalfof"] = self.account.on_behalf_of  # binds the token to the TIN
        response = self.http.send(
            "POST",
            f"{self.account.token_base}{TOKEN_PATH}",
            "token",
            headers=headers,
            data={
                "client_id": self.account.client_id,
                "client_secret": self.account.secret(),
                "grant_type": "client_credentials",
                "scope": "InvoicingAPI",
            },
        )
        return token_from(response, f"myinvois {self.account.name}")

    def get_page(
        self, date_from: datetime, date_to: datetime, page_no: int, page_size: int
    ) -> bytes:
        """The raw body of one page. The caller has taken the budget for it.

        A 401 drops the token and raises :class:`TokenRejectedError` (the next call logs
        in again, through the budget); a second 401 in a row raises AuthError.
        """
        headers = {"Authorization": f"Bearer {self.tokens.get()}", "Accept": "application/json"}
        params = {
            "dateFrom": iso_z(date_from),
            "dateTo": iso_z(date_to),
            "pageNo": str(page_no),
            "pageSize": str(min(max(page_size, 1), 100)),
        }
        response = self.http.send(
            "GET",
            f"{self.account.base_url}{NOTIFICATIONS_PATH}",
            "notifications",
            headers=headers,
            params=params,
        )
        code = response.status_code
        name = self.account.name
        if code == 401:
            self.tokens.invalidate()
            if self._rejected:
                raise AuthError(f"myinvois {name}: 401 after a fresh token")
            self._rejected = True
            raise TokenRejectedError(f"myinvois {name}: 401, token refreshed")
        self._rejected = False
        if code == 200:
            return response.content
        if code == 403:
            # The permission may have been granted since this token was issued: log in again.
            self.tokens.invalidate()
            raise ForbiddenError(f"myinvois {name}: 403 on notifications")
        if code == 400:
            page_size_named, target = _error_target(response.content)
            if page_size_named:
                raise PageSizeRefusedError(f"myinvois {name}: 400, pageSize {page_size} refused")
            what = f"argument {target}" if target else "request"
            said = upstream_text(response.content)
            quoted = f"; {UPSTREAM_SAID}{json.dumps(said, ensure_ascii=False)}" if said else ""
            raise BadRequestError(f"myinvois {name}: 400, the server refused our {what}{quoted}")
        raise TransientError(f"myinvois {name}: notifications answered {code}")


QUERY_PARAMETERS = ("dateFrom", "dateTo", "type", "language", "status", "pageNo", "pageSize")


def _error_target(body: bytes) -> tuple[bool, str]:
    """``(names pageSize, the parameter it names)`` of a standard error response.

    The official shape is ``{"error": {"propertyName", "errorCode", "error", "target", ...}}``
    (https://sdk.myinvois.hasil.gov.my/standard-error-response/); older documents show
    ``{"error": {"code", "message", "target"}}``; both are read. Only a known parameter
    name is echoed into our errors, never upstream text.
    """
    try:
        document = loads(body)
    except (ValueError, RecursionError):
        return False, ""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return False, ""
    texts = [error.get(key) for key in ("target", "propertyName", "error", "message")]
    words = " ".join(text for text in texts if isinstance(text, str))
    target = next((t for t in texts[:2] if isinstance(t, str) and t in QUERY_PARAMETERS), "")
    return "pagesize" in words.lower(), target


def upstream_text(body: bytes) -> str:
    """``errorCode: error (propertyName)`` of a standard error response, made safe to show.

    https://sdk.myinvois.hasil.gov.my/standard-error-response/: ``error`` is the English
    text, ``errorMS`` the Malay one (used when there is no English). Control characters
    become spaces and the text is cut at :data:`UPSTREAM_TEXT_MAX`; "" when there is none.
    """
    try:
        document = loads(body)
    except (ValueError, RecursionError):
        return ""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return ""

    def text(key: str) -> str:
        value = error.get(key)
        return " ".join(value.split()) if isinstance(value, str) else ""

    message = text("error") or text("errorMS") or text("message")
    code = text("errorCode") or text("code")
    found = ": ".join(part for part in (code, message) if part)
    if found and text("propertyName"):
        found += f" ({text('propertyName')})"
    found = "".join(ch if ch.isprintable() else " " for ch in found)
    return found if len(found) <= UPSTREAM_TEXT_MAX else found[: UPSTREAM_TEXT_MAX - 1] + "…"


def parse_page(body: bytes, page_size: int) -> tuple[list[Any], bool]:
    """``(result, hasNext)`` of one page; TransientError when it is not one.

    Reading again is harmless, so a page that does not parse is retried, never
    dead-lettered. A page that parses only leniently (an item holding ``NaN``, ``Infinity``
    or ``1e999``) is not retried forever: it is read, and the window dead-letters those
    items (:func:`daemon.envelope.myinvois.check_myinvois`). A missing ``hasNext`` means "another
    page" when this one was full.
    """
    try:
        document = loads(body)
    except ValueError:
        try:
            document = loads(body, strict=False)
        except ValueError:
            # One poison item (nested too deeply, a huge integer) must not stall the account:
            # read the page item by item; a truncated page stays an error, asked for again.
            document = salvage(body, "result")
            if document is None:
                raise TransientError(
                    f"notifications page is not JSON ({len(body)} bytes)"
                ) from None
    if not isinstance(document, dict) or not isinstance(document.get("result"), list):
        raise TransientError("notifications page has no 'result' list")
    items: list[Any] = document["result"]
    metadata = document.get("metadata")
    has_next = metadata.get("hasNext") if isinstance(metadata, dict) else None
    if not isinstance(has_next, bool):
        has_next = len(items) >= page_size
    return items, has_next and bool(items)
