"""Upstream answers read as the documents mean them (issue 25): 404 bodies, 400 texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.errors import NotFoundError
from daemon.sources.docplanner.api import is_empty_queue
from daemon.sources.myinvois.api import UPSTREAM_TEXT_MAX, upstream_text
from tests.unit.test_puller import BODY, make

REFUSED = {"source": "docplanner", "account": "pl", "reason": "not_found"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"errors":[],"message":"No notifications found"}',  # [OAS] NotificationNotFound
        b'{ "message" : "No notifications found",\n "errors" : [ ] }',  # any spacing, any order
        b'{"errors":{},"message":"No notifications found"}',  # Error.errors: list or object
    ],
)
def test_the_documented_empty_queue_body_is_an_empty_queue(body: bytes) -> None:
    """Only the documented 404 body (spacing, key order, errors [] or {}) means "empty"."""
    assert is_empty_queue(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"errors":[],"message":"Object not found"}',  # [OAS] the generic 404 example
        b'{"errors":[],"message":"no notifications found"}',
        b'{"errors":["x"],"message":"No notifications found"}',
        b'{"errors":[],"message":"No notifications found","code":1}',
        b'{"message":"No notifications found"}',
        b"<html><body><h1>404 Not Found</h1></body></html>",
        b"",
        b'"No notifications found"',
        b'{"errors":[],"message":"No notifications found"',
    ],
)
def test_any_other_404_body_is_not_an_empty_queue(body: bytes) -> None:
    """Another message, key, HTML page, truncated or empty body is not an empty queue."""
    assert not is_empty_queue(body)


def test_an_unexpected_404_is_named_counted_backed_off_and_cleared(tmp_path: Path) -> None:
    """NotFoundError: not_ready at once, refusal gauge 1 and counted; a good pull clears both."""
    error = NotFoundError("docplanner pl: pull answered a 404 that is not the empty queue")
    puller, api, _ = make(tmp_path, [error, error, BODY])
    registry = puller.metrics.registry
    first = puller.tick(0.0)
    assert 0 < first <= 300.0 and api.pulls == 1
    assert "404" in str(puller.health.snapshot().detail["not_ready"])
    assert puller.health.failing_since == 0.0 and puller.health.last_success is None
    assert registry.get_sample_value("drainer_upstream_refused", REFUSED) == 1
    puller.tick(first)
    assert registry.get_sample_value("drainer_upstream_refusals_total", REFUSED) == 2
    assert puller.tick(first * 3) == 0.0
    assert "not_ready" not in puller.health.snapshot().detail
    assert registry.get_sample_value("drainer_upstream_refused", REFUSED) == 0
    assert puller.health.failing_since is None


def test_the_myinvois_error_text_is_read_from_the_standard_error_response() -> None:
    """errorCode: error (propertyName); Malay when no English; control chars gone; capped."""
    official = {
        "error": {
            "propertyName": "dateFrom",
            "propertyPath": None,
            "errorCode": "BadArgument",
            "error": "Date range\nis too long",
            "errorMS": "Julat tarikh terlalu panjang",
            "target": "dateFrom",
            "innerError": [],
        }
    }
    assert upstream_text(json.dumps(official).encode()) == (
        "BadArgument: Date range is too long (dateFrom)"
    )
    malay = {"error": {"errorCode": "BadRequest", "errorMS": "Permintaan\x07 tidak sah"}}
    assert upstream_text(json.dumps(malay).encode()) == "BadRequest: Permintaan  tidak sah"
    long = {"error": {"errorCode": "X", "error": "y" * 500}}
    text = upstream_text(json.dumps(long).encode())
    assert len(text) == UPSTREAM_TEXT_MAX and text.endswith("…")
    for body in (b"<html>400</html>", b"", b'{"error": "flat"}', b"[]"):
        assert upstream_text(body) == ""
