"""The HTTP client both sources share: timeouts, status classification, metrics, tokens.

:class:`UpstreamClient` sends one request and turns the answer into either a response
the caller wants or one of our errors (:mod:`daemon.errors`): 429 -> RateLimitedError
with the time of the next allowed call (``Retry-After``, seconds or an HTTP date, or
``X-RateLimit-Reset``);
5xx, 405 WAF pages, resets and timeouts -> TransientError. Rate-limit headers with
nothing remaining block the budget until the reset. The poll loop is the retry.

:class:`TokenCache` holds an OAuth2 client-credentials token until shortly before
``expires_in`` runs out; a 401 invalidates it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.utils import get_environ_proxies

from daemon.errors import AuthError, NotFoundError, RateLimitedError, TransientError
from daemon.metrics import Metrics
from daemon.sources.budget import SlidingWindowBudget

CONNECT_TIMEOUT = (
    5.0  # a loopback or LAN-speed TCP (and TLS) handshake; beyond this the host is down
)
READ_TIMEOUT = 10.0  # non-destructive calls (tokens, MyInvois pages, release): retrying is free
# A DocPlanner pull is destructive (up to 100 notifications already removed upstream): a
# slow answer abandoned is a batch lost, so its read timeout is generous (see api.py).
DEFAULT_RATE_LIMIT_WAIT = 60.0
MAX_RATE_LIMIT_WAIT = 3700.0


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float  # monotonic


class TokenCache:
    """A cached bearer token; ``fetch`` returns ``(access_token, expires_in)``."""

    def __init__(self, fetch: Callable[[], tuple[str, float]], clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._clock = clock
        self._token: Token | None = None
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._token.expires_at:
                value, expires_in = self._fetch()
                # Refresh a little early: at 90 % of the lifetime, at most 5 min early.
                early = min(300.0, expires_in * 0.1)
                self._token = Token(value, now + max(1.0, expires_in - early))
            return self._token.value

    def valid(self) -> bool:
        """A cached token is there and not yet due for refresh (no login needed)."""
        with self._lock:
            return self._token is not None and self._clock() < self._token.expires_at

    def invalidate(self) -> None:
        with self._lock:
            self._token = None


class UpstreamClient:
    """One account's HTTP session with metrics and a rate budget.

    ``budgeted`` names the endpoints the budget governs (None: all of them). Rate-limit
    answers of other endpoints still raise RateLimitedError for their caller, but do not
    block the budget: DocPlanner's release POST has its own limit, and its hourly 429 must
    not pause the GET pulls. ``endpoint_budgets`` gives an endpoint a budget of its own
    (MyInvois logins: a 429 on ``token`` blocks the Client ID's login budget).
    """

    def __init__(
        self,
        source: str,
        account: str,
        metrics: Metrics,
        budget: SlidingWindowBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        budgeted: Collection[str] | None = None,
        endpoint_budgets: Mapping[str, SlidingWindowBudget] | None = None,
    ) -> None:
        self.source = source
        self.account = account
        self.metrics = metrics
        self.budget = budget
        self.budgeted = None if budgeted is None else frozenset(budgeted)
        self.endpoint_budgets = dict(endpoint_budgets or {})
        self.clock = clock
        self.wall_clock = wall_clock
        self.timeout = timeout
        self.session = requests.Session()
        # The environment is read once per upstream, not on every request: with trust_env
        # requests walks os.environ for proxies and looks for ~/.netrc on each call (about a
        # third of its CPU per pull). Proxies (HTTP(S)_PROXY, NO_PROXY) and the CA bundle
        # (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) are honoured as before. ~/.netrc is not read:
        # an entry for the upstream host would replace the bearer token with Basic auth.
        self.session.trust_env = False
        self.session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self._proxies: dict[str, dict[str, str]] = {}

    def proxies_for(self, url: str) -> dict[str, str]:
        """The environment's proxies for ``url``'s scheme and host (empty: go direct)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        found = self._proxies.get(origin)
        if found is None:
            found = self._proxies[origin] = dict(get_environ_proxies(origin))
        return found

    def close(self) -> None:
        self.session.close()

    def send(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send one request; return the response unless it is a 429 or a transient failure.

        Other 4xx responses (401, 403, 404, 400) are returned for the caller to interpret.
        ``timeout`` is this call's (connect, read) timeout; default the client's.
        """
        labels = {"source": self.source, "account": self.account}
        started = time.perf_counter()
        try:
            response = self.session.request(
                method,
                url,
                headers=dict(headers or {}),
                params=params,
                data=data,
                auth=auth,
                timeout=timeout or self.timeout,
                allow_redirects=False,
                proxies=self.proxies_for(url),
            )
            body = response.content  # read it all now, inside the timing and the try
        except requests.RequestException as exc:
            self.metrics.upstream_requests.labels(**labels, endpoint=endpoint, code="error").inc()
            raise TransientError(f"{endpoint}: {type(exc).__name__}") from None
        finally:
            self.metrics.upstream_duration.labels(**labels, endpoint=endpoint).observe(
                time.perf_counter() - started
            )
        code = response.status_code
        self.metrics.upstream_requests.labels(**labels, endpoint=endpoint, code=str(code)).inc()
        budget = self._budget_for(endpoint)
        if budget is not None:
            self._note_rate_headers(response, budget)
        if code == 429:
            self.metrics.rate_limited.labels(**labels).inc()
            retry_at = self.clock() + self._rate_limit_wait(response)
            if budget is not None:
                budget.block_until(retry_at)
            raise RateLimitedError(f"{endpoint}: 429 rate limited", retry_at)
        if code >= 500:
            raise TransientError(f"{endpoint}: server error {code}")
        if code == 405 and b"<" in body[:200]:
            raise TransientError(f"{endpoint}: 405 with an HTML body (WAF challenge)")
        return response

    def _rate_limit_wait(self, response: requests.Response) -> float:
        retry_after = response.headers.get("Retry-After")
        if retry_after is not None:
            wait = self._retry_after(retry_after, response)
            if wait is not None:
                return min(MAX_RATE_LIMIT_WAIT, wait)
        reset = self._reset_in(response)
        if reset is not None:
            return min(MAX_RATE_LIMIT_WAIT, reset)
        return DEFAULT_RATE_LIMIT_WAIT

    def _retry_after(self, raw: str, response: requests.Response) -> float | None:
        """``Retry-After`` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), else None.

        A date is measured against the response's ``Date`` (upstream's clock), like a reset.
        """
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:
            moment = parsedate_to_datetime(raw.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        upstream_now = _date_header(response) or self.wall_clock()
        return max(0.0, moment.timestamp() - upstream_now)

    def _reset_in(self, response: requests.Response) -> float | None:
        """Seconds until ``X-RateLimit-Reset`` / ``X-Rate-Limit-Reset`` (ISO 8601 or secs).

        Measured against the response's own ``Date`` header when there is one: the reset is
        upstream's clock, and ours may be off by any amount.
        """
        raw = response.headers.get("X-RateLimit-Reset") or response.headers.get(
            "X-Rate-Limit-Reset"
        )
        if not raw:
            return None
        upstream_now = _date_header(response) or self.wall_clock()
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            try:
                seconds = float(raw)
            except ValueError:
                return None
            # Either seconds from now or a Unix time.
            return max(0.0, seconds - upstream_now) if seconds > 10**9 else max(0.0, seconds)
        if moment.tzinfo is None:
            return None
        return max(0.0, moment.timestamp() - upstream_now)

    def _budget_for(self, endpoint: str) -> SlidingWindowBudget | None:
        if endpoint in self.endpoint_budgets:
            return self.endpoint_budgets[endpoint]
        if self.budgeted is not None and endpoint not in self.budgeted:
            return None
        return self.budget

    def _note_rate_headers(self, response: requests.Response, budget: SlidingWindowBudget) -> None:
        """Nothing remaining upstream: block the budget until the upstream's reset."""
        remaining = response.headers.get("X-RateLimit-Remaining") or response.headers.get(
            "X-Rate-Limit-Remaining"
        )
        if remaining is not None and remaining.strip() == "0":
            reset = self._reset_in(response)
            if reset is not None:
                budget.block_until(self.clock() + min(MAX_RATE_LIMIT_WAIT, reset))


def _date_header(response: requests.Response) -> float | None:
    """The response's ``Date`` as a Unix time, or None."""
    raw = response.headers.get("Date")
    if not raw:
        return None
    try:
        return parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None


# RFC 6749 §5.2: the error codes of a refused token request. Only these are echoed into our
# errors (e.g. invalid_client: wrong id or secret; invalid_grant: MyInvois refusing
# onbehalfof), never the upstream's free text.
OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)


def _oauth_error(response: requests.Response) -> str:
    """`` <code>`` when the body names an RFC 6749 error code, else empty."""
    try:
        code = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f" {code}" if isinstance(code, str) and code in OAUTH_ERRORS else ""


def token_from(response: requests.Response, what: str) -> tuple[str, float]:
    """``(access_token, expires_in)`` from a token response, or AuthError/TransientError."""
    if response.status_code in (400, 401, 403):
        code = f"{response.status_code}{_oauth_error(response)}"
        raise AuthError(f"{what}: token request refused ({code})")
    if response.status_code == 404:
        # No token endpoint there: the configured URL is wrong (or the route moved).
        raise NotFoundError(f"{what}: token endpoint not found (404): check base_url")
    if response.status_code != 200:
        raise TransientError(f"{what}: token endpoint answered {response.status_code}")
    try:
        document = response.json()
        token = document["access_token"]
        expires_in = float(document.get("expires_in", 3600))
    except (ValueError, KeyError, TypeError):
        raise TransientError(f"{what}: token response is not a token") from None
    if not isinstance(token, str) or not token:
        raise TransientError(f"{what}: token response has no access_token")
    return token, expires_in
