"""DocPlanner's push emitter: POST each notification as JSON to a client's endpoint.

Non-2xx pushes are remembered per client as "failed"; a successful ``release`` call
hands them back for re-dispatch. Deliveries run in the caller's thread; retries after a
failed push (``push_retries="guide"``) run in :class:`PushRetries`' thread, and a push
still failing after them becomes "failed".
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from daemon.sandbox.push_retry import PushRetries
from daemon.sandbox.server import json_body

PUSH_TIMEOUT = 10.0
# [C G-PVP] (docplanner-api-notes.md §5): DocPlanner "supports API Key authorization in the
# request header", the header agreed with the client: the default, or the client's push_header.
TOKEN_HEADER = "X-Drainer-Token"  # noqa: S105 - a header name, not a secret


def post_each(
    url: str, token: str | None, notifications: Iterable[Any], header: str = TOKEN_HEADER
) -> list[int]:
    """POST every notification, one request each, over one kept-alive connection.

    Returns the status of each POST in order; ``0`` means no HTTP answer (refused,
    reset, timed out). The body is the notification's JSON, ``application/json``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"push_url must be an http(s) URL, got {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json", "User-Agent": "DocPlanner-Push/sandbox"}
    if token:
        headers[header] = token
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    statuses: list[int] = []
    connection: http.client.HTTPConnection | None = None
    try:
        for notification in notifications:
            if connection is None:
                connection = kind(parts.hostname, parts.port, timeout=PUSH_TIMEOUT)
            try:
                connection.request("POST", target, body=json_body(notification), headers=headers)
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException):
                statuses.append(0)
                if connection is not None:
                    connection.close()
                connection = None
    finally:
        if connection is not None:
            connection.close()
    return statuses


class PushEmitter:
    """Pushes notifications and remembers, per client, which got a 2xx and which failed."""

    def __init__(self, retries: str = "once", retry_scale: float = 1.0) -> None:
        self._lock = threading.Condition()
        self._pushed: dict[str, list[Any]] = {}
        self._failed: dict[str, list[Any]] = {}
        self._redispatching = 0
        self.retries = PushRetries(retries, retry_scale, deliver=self._retry, bury=self._bury)

    def send(
        self,
        client_id: str,
        url: str,
        token: str | None,
        items: list[Any],
        header: str = TOKEN_HEADER,
        retry: bool = True,
    ) -> list[int]:
        statuses = post_each(url, token, items, header)
        with self._lock:
            for item, status in zip(items, statuses, strict=True):
                if 200 <= status < 300:
                    self._pushed.setdefault(client_id, []).append(item)
                elif not (retry and self.retries.schedule((client_id, url, token, header, item))):
                    self._failed.setdefault(client_id, []).append(item)
        return statuses

    def _retry(self, job: tuple[str, str, str | None, str, Any]) -> bool:
        client_id, url, token, header, item = job
        (status,) = post_each(url, token, [item], header)
        if 200 <= status < 300:
            with self._lock:
                self._pushed.setdefault(client_id, []).append(item)
            return True
        return False

    def _bury(self, job: tuple[str, str, str | None, str, Any]) -> None:
        client_id, _, _, _, item = job
        with self._lock:
            self._failed.setdefault(client_id, []).append(item)

    def pushed(self, client_id: str) -> list[Any]:
        with self._lock:
            return list(self._pushed.get(client_id, []))

    def failed(self, client_id: str) -> list[Any]:
        with self._lock:
            return list(self._failed.get(client_id, []))

    def take_failed(self, client_id: str) -> list[Any]:
        """Hand the failed pushes over for re-dispatch; call :meth:`redispatch` with them."""
        with self._lock:
            self._redispatching += 1
            return self._failed.pop(client_id, [])

    def redispatch(
        self,
        client_id: str,
        url: str,
        token: str | None,
        items: list[Any],
        header: str = TOKEN_HEADER,
    ) -> None:
        try:
            if items:
                self.send(client_id, url, token, items, header, retry=False)
        finally:
            with self._lock:
                self._redispatching -= 1
                self._lock.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no re-dispatch is running; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._redispatching == 0, timeout)
