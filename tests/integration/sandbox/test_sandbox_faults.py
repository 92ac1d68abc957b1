"""Injected faults behave as named, in both sandboxes, scripted or random."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
import requests

from daemon.sandbox import DocPlannerSandbox, Fault, MyInvoisSandbox
from daemon.sandbox.faults import KINDS, Faults, all_kinds_rates


def test_fault_parse() -> None:
    """Fault names parse, slow takes seconds, ok is no fault, junk is refused."""
    assert Fault.parse("503") == Fault("503")
    assert Fault.parse("slow:1.5") == Fault("slow", 1.5)
    assert str(Fault.parse("slow:1.5")) == "slow:1.5"
    assert Fault.parse("ok") is None
    for bad in ("504", "slow:x", "slow:-1", "waf:2"):
        with pytest.raises(ValueError, match="fault"):
            Fault.parse(bad)


def test_script_is_used_in_order_then_nothing() -> None:
    """A script hands out one fault per draw, in order, then no more."""
    faults = Faults()
    faults.script(["500", "ok", "waf"])
    assert [faults.draw() for _ in range(4)] == [Fault("500"), None, Fault("waf"), None]
    assert faults.injected == [Fault("500"), Fault("waf")]


def test_rates_are_seeded_and_clearable() -> None:
    """The same seed gives the same random faults; clear() stops them."""
    first, second = Faults(), Faults()
    first.set_rates({"500": 0.3, "reset": 0.2}, seed=4)
    second.set_rates({"500": 0.3, "reset": 0.2}, seed=4)
    draws = [first.draw() for _ in range(200)]
    assert draws == [second.draw() for _ in range(200)]
    assert 30 < sum(1 for fault in draws if fault == Fault("500")) < 90
    assert sum(1 for fault in draws if fault == Fault("reset")) > 15
    first.clear()
    assert all(first.draw() is None for _ in range(50))


def test_all_kinds_rates_covers_every_kind() -> None:
    """--fault-rate spreads the probability over every fault kind."""
    rates = all_kinds_rates(0.5)
    assert {Fault.parse(name).kind for name in rates} == set(KINDS)  # type: ignore[union-attr]
    assert sum(rates.values()) == pytest.approx(0.5)


# -- DocPlanner --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "503"])
def test_dp_server_errors(dp: DocPlannerSandbox, dp_api: Any, kind: str) -> None:
    """500/503 answer with the vnd.error body and pop nothing."""
    dp.enqueue("pl-id", 2)
    token = dp_api.token()
    dp.faults.script([kind])
    response = dp_api.pull(token, 10)
    assert response.status_code == int(kind)
    assert response.headers["Content-Type"] == "application/vnd.error+docplanner+json"
    assert response.json()["errors"] == []
    assert dp.queue_length("pl-id") == 2


def test_dp_injected_429_has_rate_headers(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """An injected 429 says Remaining 0 and a reset one second ahead."""
    token = dp_api.token()
    dp.faults.script(["429"])
    response = dp_api.pull(token, 1)
    assert response.status_code == 429
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Reset" in response.headers


def test_dp_waf_is_405_html(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """The WAF answers 405 with an HTML page."""
    dp.enqueue("pl-id", 1)
    token = dp_api.token()
    dp.faults.script(["waf"])
    response = dp_api.pull(token, 1)
    assert response.status_code == 405
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")
    assert dp.queue_length("pl-id") == 1


def test_dp_reset_drops_connection_before_popping(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """reset closes the connection with no response and leaves the queue alone."""
    dp.enqueue("pl-id", 3)
    token = dp_api.token()
    dp.faults.script(["reset"])
    with pytest.raises(requests.ConnectionError):
        dp_api.pull(token, 10)
    assert dp.queue_length("pl-id") == 3
    assert dp.handed_out("pl-id") == [] and dp.lost_in_flight("pl-id") == []
    assert ("GET", "/api/v3/integration/notifications/multiple", 0) in dp.requests


def test_dp_reset_after_loses_the_popped_batch(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """reset_after pops the batch, records it as lost in flight, and sends nothing."""
    queued = dp.enqueue("pl-id", 5)
    token = dp_api.token()
    dp.faults.script(["reset_after"])
    with pytest.raises(requests.ConnectionError):
        dp_api.pull(token, 2)
    assert dp.lost_in_flight("pl-id") == queued[:2]
    assert dp.handed_out("pl-id") == []
    assert dp_api.pull(token, 10).json()["notifications"] == queued[2:]


def test_dp_truncate_sends_half_a_valid_response(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """truncate pops the batch and sends a well-framed response whose JSON is cut off."""
    queued = dp.enqueue("pl-id", 4)
    token = dp_api.token()
    dp.faults.script(["truncate"])
    response = dp_api.pull(token, 4)
    assert response.status_code == 200
    assert len(response.content) == int(response.headers["Content-Length"]) > 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert response.text.startswith('{"notifications":[')
    assert dp.handed_out("pl-id") == queued
    assert dp.queue_length("pl-id") == 0


def test_dp_malformed_mixes_invalid_items_into_a_batch(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """malformed adds one or two invalid items to a real batch, all recorded as handed out."""
    queued = dp.enqueue("pl-id", 5)
    token = dp_api.token()
    dp.faults.script(["malformed"])
    items = dp_api.pull(token, 5).json()["notifications"]
    bad = [item for item in items if item not in queued]
    assert 1 <= len(bad) <= 2 and len(items) == 5 + len(bad)
    for item in bad:
        assert (
            not isinstance(item, dict)
            or "name" not in item
            or not isinstance(item.get("data"), dict)
        )
    assert dp.handed_out("pl-id") == items


def test_dp_malformed_on_single_pull_pops_nothing(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """On GET /notifications, malformed serves one invalid item instead of a real one."""
    dp.enqueue("pl-id", 1)
    token = dp_api.token()
    dp.faults.script(["malformed"])
    item = dp_api.get("/notifications", token).json()
    assert not isinstance(item, dict) or "name" not in item or not isinstance(item["data"], dict)
    assert dp.queue_length("pl-id") == 1
    assert dp.handed_out("pl-id") == [item]


def test_dp_slow_delays_the_response(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """slow:S delays the request by S seconds, then serves it normally."""
    dp.enqueue("pl-id", 1)
    token = dp_api.token()
    dp.faults.script(["slow:0.3"])
    started = time.monotonic()
    response = dp_api.pull(token, 1)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200


def test_dp_token_expired_forces_reauthentication(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """token_expired revokes every token: 401 'expired', and a new token works."""
    dp.enqueue("pl-id", 1)
    token = dp_api.token()
    dp.faults.script(["token_expired"])
    response = dp_api.pull(token, 1)
    assert response.status_code == 401 and "expired" in response.json()["message"]
    assert dp_api.pull(token, 1).status_code == 401
    assert dp_api.pull(dp_api.token(), 1).status_code == 200


def test_dp_faults_apply_one_per_request_in_order(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """A script is consumed by the pull endpoints one request at a time, not by /token."""
    dp.enqueue("pl-id", 3)
    dp.faults.script(["503", "ok", "500"])
    token = dp_api.token()
    statuses = [dp_api.pull(token, 1).status_code for _ in range(4)]
    assert statuses == [503, 200, 500, 200]


def test_dp_random_faults_never_lose_track(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """Under random faults every popped notification is handed out or lost in flight."""
    queued = dp.enqueue("pl-id", 120)
    dp.faults.set_rates({"500": 0.1, "reset_after": 0.1, "truncate": 0.1, "reset": 0.1}, seed=3)
    token = dp_api.token()
    for _ in range(45):
        with contextlib.suppress(requests.ConnectionError):
            dp_api.pull(token, 5)
    popped = [*dp.handed_out("pl-id"), *dp.lost_in_flight("pl-id")]
    assert dp.lost_in_flight("pl-id") and len(popped) == 120 - dp.queue_length("pl-id")
    canonical = [json.dumps(item, sort_keys=True) for item in popped]
    assert sorted(canonical) == sorted(json.dumps(i, sort_keys=True) for i in queued[: len(popped)])


# -- MyInvois ----------------------------------------------------------------------------

ERROR_FIELDS = {
    "propertyName", "propertyPath", "errorCode", "error", "errorMS", "target", "innerError"
}  # fmt: skip


@pytest.mark.parametrize("kind", ["500", "503"])
def test_mi_server_errors(mi: MyInvoisSandbox, mi_api: Any, kind: str) -> None:
    """500/503 use the official standard error body."""
    token = mi_api.token()
    mi.faults.script([kind])
    response = mi_api.page(token)
    assert response.status_code == int(kind)
    assert set(response.json()["error"]) == ERROR_FIELDS


def test_mi_injected_403_is_forbidden_then_pages_again(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """An injected 403 uses the standard error body; the next request is served again."""
    token = mi_api.token()
    mi.faults.script(["403"])
    response = mi_api.page(token)
    assert response.status_code == 403 and response.json()["error"]["errorCode"] == "Forbidden"
    assert mi_api.page(token).status_code == 200


def test_mi_injected_429_has_retry_after(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """An injected 429 carries Retry-After and the X-Rate-Limit headers."""
    token = mi_api.token()
    mi.faults.script(["429"])
    response = mi_api.page(token)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.headers["X-Rate-Limit-Remaining"] == "0"


def test_mi_waf_reset_and_reset_after(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """waf is 405 HTML; reset and reset_after drop the connection and serve nothing."""
    mi.add_notifications("acme-id", 3)
    token = mi_api.token()
    mi.faults.script(["waf", "reset", "reset_after"])
    waf = mi_api.page(token)
    assert waf.status_code == 405 and waf.headers["Content-Type"].startswith("text/html")
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            mi_api.page(token)
    assert mi.handed_out("acme-id") == set()


def test_mi_truncate_and_malformed(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """truncate cuts the JSON body; malformed adds an item without notificationId."""
    added = mi.add_notifications("acme-id", 4)
    token = mi_api.token()
    mi.faults.script(["truncate", "malformed"])
    cut = mi_api.page(token)
    assert len(cut.content) == int(cut.headers["Content-Length"])
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    assert mi.handed_out("acme-id") == {record["notificationId"] for record in added}
    result = mi_api.page(token).json()["result"]
    assert len(result) == 5
    missing = [record for record in result if "notificationId" not in record]
    assert missing == mi.malformed_served("acme-id") and len(missing) == 1


def test_mi_slow_and_token_expired(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """slow delays a page; token_expired makes the next call 401 until re-authentication."""
    token = mi_api.token()
    mi.faults.script(["slow:0.3", "token_expired"])
    started = time.monotonic()
    assert mi_api.page(token).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert mi_api.page(token).status_code == 401
    assert mi_api.page(mi_api.token()).status_code == 200


def test_mi_injected_400_uses_the_official_error_shape(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """An injected 400: {"error": {...}} with every official field, English and Malay text."""
    token = mi_api.token()
    mi.faults.script(["400"])
    response = mi_api.page(token)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == ERROR_FIELDS and error["errorCode"] == "BadRequest"
    assert error["error"] == "The request is not valid"
    assert error["errorMS"] == "Permintaan tidak sah"
    assert mi_api.page(token).status_code == 200
