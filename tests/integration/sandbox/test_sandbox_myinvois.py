"""The MyInvois sandbox follows the official SDK pages (login, Get Notifications, errors)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from daemon.sandbox import MyInvoisClient, MyInvoisSandbox, SandboxClock
from daemon.sandbox.ratelimit import SlidingWindow

FIELDS = {
    "notificationId",
    "receiverName",
    "notificationDeliveryId",
    "creationDateTime",
    "receivedDateTime",
    "notificationSubject",
    "deliveredDateTime",
    "typeId",
    "typeName",
    "finalMessage",
    "address",
    "language",
    "status",
    "deliveryAttempts",
}
TYPES = {"3", "6", "7", "8", "10", "11", "15", "26", "33", "34", "35"}


def z(stamp: datetime) -> str:
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def order_key(record: dict[str, Any]) -> tuple[str, str]:
    return record["receivedDateTime"], record["notificationId"]


ERROR_FIELDS = {
    "propertyName", "propertyPath", "errorCode", "error", "errorMS", "target", "innerError"
}  # fmt: skip


def test_token_ok(mi: MyInvoisSandbox, http: Any) -> None:
    """Form client credentials with scope InvoicingAPI get a Bearer token for 3600 s."""
    response = http.post(
        f"{mi.base_url}/connect/token",
        data={
            "client_id": "acme-id",
            "client_secret": "acme-secret",
            "grant_type": "client_credentials",
            "scope": "InvoicingAPI",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "InvoicingAPI" and body["access_token"]


def test_token_bad_client_is_400_invalid_client(mi: MyInvoisSandbox, http: Any) -> None:
    """A wrong secret gets 400 with error invalid_client (login page error list)."""
    response = http.post(
        f"{mi.base_url}/connect/token",
        data={
            "client_id": "acme-id",
            "client_secret": "nope",
            "grant_type": "client_credentials",
            "scope": "InvoicingAPI",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"


def test_scope_is_optional_and_only_body_credentials_count(
    mi: MyInvoisSandbox, mi_api: Any
) -> None:
    """No scope still logs in; a wrong scope is invalid_scope; HTTP Basic alone is refused."""
    assert mi_api.login(scope="").status_code == 200
    assert mi_api.login(scope="Other").json()["error"] == "invalid_scope"
    basic = mi_api.session.post(
        f"{mi.identity_url}/connect/token",
        auth=("acme-id", "acme-secret"),
        data={"grant_type": "client_credentials"},
    )
    assert basic.status_code == 400 and basic.json()["error"] == "invalid_request"


def test_missing_or_expired_token_is_401(clock: SandboxClock, mi_api: Any) -> None:
    """No token, or one older than its TTL, gets 401."""
    assert mi_api.page(None).status_code == 401
    token = mi_api.token()
    assert mi_api.page(token).status_code == 200
    clock.advance(3601)
    assert mi_api.page(token).status_code == 401


def test_pages_newest_first_with_has_next(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """250 records come back in three pages, newest first, hasNext until the last."""
    added = mi.add_notifications("acme-id", 250)
    token = mi_api.token()
    seen: list[dict[str, Any]] = []
    for page_no, has_next in ((1, True), (2, True), (3, False)):
        body = mi_api.page(token, pageNo=page_no, pageSize=100).json()
        assert body["metadata"] == {"hasNext": has_next}
        seen.extend(body["result"])
    assert len(seen) == 250
    assert seen == sorted(added, key=order_key, reverse=True)
    assert set(seen[0]) == FIELDS
    assert mi.handed_out("acme-id") == {record["notificationId"] for record in added}
    beyond = mi_api.page(token, pageNo=4, pageSize=100).json()
    assert beyond == {"result": [], "metadata": {"hasNext": False}}


def test_exactly_full_last_page_has_no_next(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """When the last page is exactly full, hasNext is false on it."""
    mi.add_notifications("acme-id", 200)
    token = mi_api.token()
    assert mi_api.page(token, pageNo=1, pageSize=100).json()["metadata"]["hasNext"] is True
    last = mi_api.page(token, pageNo=2, pageSize=100).json()
    assert len(last["result"]) == 100 and last["metadata"]["hasNext"] is False


def test_records_have_every_field_and_valid_values(mi: MyInvoisSandbox) -> None:
    """Generated records carry the full model, string typeIds from the list, UTC Z times."""
    for record in mi.add_notifications("acme-id", 300):
        assert set(record) == FIELDS
        assert record["typeId"] in TYPES
        assert record["creationDateTime"].endswith("Z")
        assert record["language"] in ("en", "ms")
        assert record["status"] in ("new", "pending", "batched", "delivered", "error")
        for attempt in record["deliveryAttempts"]:
            assert set(attempt) == {"attemptDateTime", "status", "statusDetails"}


def test_date_window_selects_the_date_sent_inclusive(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """dateFrom <= receivedDateTime <= dateTo, both ends included; creation time is ignored."""
    base = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    times = [base + timedelta(minutes=minute) for minute in range(5)]
    added = mi.add_notifications_at("acme-id", times, created_before=5 * 3600)
    assert added[0]["creationDateTime"] == z(times[0] - timedelta(hours=5))
    assert added[0]["receivedDateTime"] == z(times[0])
    body = mi_api.page(mi_api.token(), dateFrom=z(times[1]), dateTo=z(times[3])).json()
    assert [record["notificationId"] for record in body["result"]] == [
        added[3]["notificationId"],
        added[2]["notificationId"],
        added[1]["notificationId"],
    ]


def test_same_sent_time_sorts_by_id_descending(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """Records sent in the same second are ordered by notificationId, descending."""
    stamp = datetime(2026, 11, 2, tzinfo=UTC)
    added = mi.add_notifications_at("acme-id", [stamp] * 6)
    result = mi_api.page(mi_api.token()).json()["result"]
    ids = [record["notificationId"] for record in result]
    assert ids == sorted((record["notificationId"] for record in added), reverse=True)


def test_type_status_language_filters(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """type, status (id) and language narrow the result to matching records only."""
    added = mi.add_notifications("acme-id", 400)
    token = mi_api.token()
    result: list[dict[str, Any]] = []
    for page_no in (1, 2, 3):
        body = mi_api.page(token, type="6", status="4", language="en", pageNo=page_no).json()
        result += body["result"]
    expected = [
        r for r in added if (r["typeId"], r["status"], r["language"]) == ("6", "delivered", "en")
    ]
    assert expected and len(result) == len(expected)
    assert all(r["typeId"] == "6" and r["status"] == "delivered" for r in result)


@pytest.mark.parametrize(
    ("params", "target"),
    [
        ({"pageSize": 101}, "pageSize"),
        ({"pageSize": 0}, "pageSize"),
        ({"pageNo": 0}, "pageNo"),
        ({"dateFrom": "2026-11-01T00:00:00+00:00"}, "dateFrom"),
        ({"dateTo": "2026-11-01"}, "dateTo"),
        ({"dateFrom": "2026-11-02T00:00:00Z", "dateTo": "2026-11-01T00:00:00Z"}, "dateFrom"),
        ({"language": "de"}, "language"),
        ({"status": "9"}, "status"),
    ],
)
def test_bad_arguments_are_400(mi_api: Any, params: dict[str, Any], target: str) -> None:
    """Out-of-range or malformed parameters get 400 BadArgument naming the parameter."""
    response = mi_api.page(mi_api.token(), **params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["errorCode"] == "BadArgument" and error["target"] == target
    assert set(error) == ERROR_FIELDS


def test_page_size_above_the_administrators_maximum_is_400(clock: SandboxClock, http: Any) -> None:
    """With a maximum of 25, pageSize 26 is 400 BadArgument naming pageSize; 25 is served."""
    client = MyInvoisClient("acme-id", "acme-secret")
    with MyInvoisSandbox(clients=[client], clock=clock, max_page_size=25) as sandbox:
        sandbox.add_notifications("acme-id", 30)
        data = {"client_id": "acme-id", "client_secret": "acme-secret"}
        data["grant_type"] = "client_credentials"
        token = http.post(f"{sandbox.base_url}/connect/token", data=data).json()["access_token"]
        url = f"{sandbox.base_url}/api/v1.0/notifications/taxpayer"
        auth = {"Authorization": f"Bearer {token}"}
        refused = http.get(url, headers=auth, params={"pageSize": 26})
        assert refused.status_code == 400 and refused.json()["error"]["target"] == "pageSize"
        served = http.get(url, headers=auth, params={"pageSize": 25})
        assert served.status_code == 200 and len(served.json()["result"]) == 25


def test_intermediary_token_is_bound_to_the_tin_sent_at_login(
    mi: MyInvoisSandbox, mi_api: Any
) -> None:
    """onbehalfof at login binds the token; a plain login's token is 403 whatever the GET says."""
    bound = mi_api.token("agent-id", "agent-secret", onbehalfof="C1234567890")
    assert mi_api.page(bound).status_code == 200
    plain = mi_api.token("agent-id", "agent-secret")
    assert mi_api.page(plain).status_code == 403
    forbidden = mi_api.page(plain, headers={"onbehalfof": "C1234567890"})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["errorCode"] == "Forbidden"
    wrong = mi_api.login("agent-id", "agent-secret", onbehalfof="C999")
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    taxpayer = mi_api.login(onbehalfof="C1234567890")
    assert taxpayer.status_code == 400, "a taxpayer client cannot act for another TIN"
    assert mi_api.page(mi_api.token()).status_code == 200, "a taxpayer reads its own TIN"


def test_identity_service_on_its_own_port(clock: SandboxClock, http: Any) -> None:
    """With identity_port, tokens come from a second port; the API port has no /connect/token."""
    clients = [MyInvoisClient("agent-id", "agent-secret", on_behalf_of="C1234567890")]
    with MyInvoisSandbox(clients=clients, clock=clock, identity_port=0) as sandbox:
        assert sandbox.identity_url != sandbox.base_url
        assert sandbox.identity is not None and sandbox.identity.port != sandbox.port
        data = {"client_id": "agent-id", "client_secret": "agent-secret"}
        data["grant_type"] = "client_credentials"
        on_api = http.post(f"{sandbox.base_url}/connect/token", data=data)
        assert on_api.status_code == 404
        response = http.post(
            f"{sandbox.identity_url}/connect/token",
            data=data,
            headers={"onbehalfof": "C1234567890"},
        )
        assert response.status_code == 200
        token = response.json()["access_token"]
        url = f"{sandbox.base_url}/api/v1.0/notifications/taxpayer"
        page = http.get(url, headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200
        assert (
            http.get(f"{sandbox.identity_url}/api/v1.0/notifications/taxpayer").status_code == 404
        )
    assert sandbox.identity is not None
    with pytest.raises(RuntimeError):
        sandbox.identity.port  # noqa: B018 - stopped with the API


def test_some_notifications_are_sent_hours_after_creation(mi: MyInvoisSandbox) -> None:
    """Generated records: receivedDateTime >= creationDateTime, some of them hours later."""
    records = mi.add_notifications("acme-id", 300)
    gaps = [
        (
            datetime.fromisoformat(r["receivedDateTime"].replace("Z", "+00:00"))
            - datetime.fromisoformat(r["creationDateTime"].replace("Z", "+00:00"))
        ).total_seconds()
        for r in records
    ]
    assert min(gaps) >= 0
    assert sum(1 for gap in gaps if gap >= 3600) >= 30, "about a fifth are sent hours later"


def test_rate_limit_429_with_retry_after(clock: SandboxClock, http: Any) -> None:
    """Over requests_per_minute in 60 real seconds: 429 with Retry-After and rate headers."""
    client = MyInvoisClient("acme-id", "acme-secret")
    with MyInvoisSandbox(clients=[client], clock=clock, requests_per_minute=2) as sandbox:
        token = http.post(
            f"{sandbox.base_url}/connect/token",
            data={
                "client_id": "acme-id",
                "client_secret": "acme-secret",
                "grant_type": "client_credentials",
            },
        ).json()["access_token"]
        url = f"{sandbox.base_url}/api/v1.0/notifications/taxpayer"
        auth = {"Authorization": f"Bearer {token}"}
        first = http.get(url, headers=auth)
        assert first.status_code == 200 and first.headers["X-Rate-Limit-Remaining"] == "1"
        assert "X-Rate-Limit-Reset" not in first.headers, "Reset only once the limit is hit"
        assert http.get(url, headers=auth).status_code == 200
        limited = http.get(url, headers=auth)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.headers["X-Rate-Limit-Limit"] == "2"
        assert limited.headers["X-Rate-Limit-Remaining"] == "0"
        assert limited.headers["X-Rate-Limit-Reset"].endswith("Z")
        assert sandbox.count_status(429) == 1


def test_sliding_window_recovers_after_the_window() -> None:
    """The rate window frees a slot exactly when the oldest hit is window seconds old."""
    window = SlidingWindow(2, 60.0)
    assert window.hit(0.0) and window.hit(10.0)
    assert not window.hit(59.0)
    assert window.retry_after(59.0) == pytest.approx(1.0)
    assert window.hit(60.0)
    assert not window.hit(69.0)
    assert window.hit(70.0)


def test_arrivals_add_late_records_while_reading(mi: MyInvoisSandbox, mi_api: Any) -> None:
    """Background arrivals add records, some dated in the past, so later reads see more."""
    token = mi_api.token()
    started = mi.clock.now()
    halt = mi.start_arrivals(200.0, late_fraction=0.5, late_max_seconds=600.0)
    try:
        pause = threading.Event()
        for _ in range(50):
            if len(mi.notifications("acme-id")) >= 20:
                break
            pause.wait(0.05)
    finally:
        halt.set()
    records = mi.notifications("acme-id")
    assert len(records) >= 20
    stamps = [datetime.fromisoformat(r["creationDateTime"].replace("Z", "+00:00")) for r in records]
    assert any(stamp.timestamp() < started - 1 for stamp in stamps)
    assert len(mi_api.page(token).json()["result"]) >= 20
