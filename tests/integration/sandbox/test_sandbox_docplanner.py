"""The DocPlanner sandbox speaks the Integrations API as SPEC §1 describes it."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from typing import Any

import requests

from daemon.sandbox import DocPlannerSandbox, SandboxClock
from daemon.sandbox.events import KNOWN_NAMES, UNKNOWN_NAME, NotificationFactory

ERROR_TYPE = "application/vnd.error+docplanner+json"
SUCCESS_TYPE = "application/vnd.docplanner+json; charset=UTF-8"


def test_token_issued_for_basic_auth_client_credentials(dp: DocPlannerSandbox, http: Any) -> None:
    """A Basic-auth client_credentials request gets a bearer token with expires_in."""
    response = http.post(
        f"{dp.base_url}/oauth/v2/token",
        auth=("pl-id", "pl-secret"),
        data={"grant_type": "client_credentials", "scope": "integration"},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "token_type", "scope"}
    assert body["expires_in"] == 3600 and body["token_type"] == "bearer" and body["scope"] is None


def test_token_refused_for_bad_secret(dp: DocPlannerSandbox, http: Any) -> None:
    """Wrong credentials get 401 invalid_client and no token."""
    response = http.post(
        f"{dp.base_url}/oauth/v2/token",
        auth=("pl-id", "wrong"),
        data={"grant_type": "client_credentials", "scope": "integration"},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()


def test_token_accepts_form_credentials_and_rejects_other_scope(
    dp: DocPlannerSandbox, http: Any
) -> None:
    """Form-field credentials work (PHP SDK style); a scope other than integration is 400."""
    form = {"grant_type": "client_credentials", "client_id": "pl-id", "client_secret": "pl-secret"}
    assert http.post(f"{dp.base_url}/oauth/v2/token", data=form).status_code == 200
    form["scope"] = "admin"
    response = http.post(f"{dp.base_url}/oauth/v2/token", data=form)
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


def test_pull_without_token_is_401(dp_api: Any) -> None:
    """No Authorization header: 401 with the vnd.error body."""
    response = dp_api.pull(None, 10)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == ERROR_TYPE
    assert response.json()["errors"] == []


def test_token_expires_in_sandbox_time(
    clock: SandboxClock, dp: DocPlannerSandbox, dp_api: Any
) -> None:
    """After token_ttl sandbox seconds the token gets 401 'has expired'."""
    token = dp_api.token()
    assert dp_api.pull(token, 1).status_code == 404
    clock.advance(3600)
    response = dp_api.pull(token, 1)
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_empty_queue_is_404_with_exact_body(dp_api: Any) -> None:
    """Both pull endpoints answer an empty queue with the documented 404 body."""
    token = dp_api.token()
    for path in ("/notifications", "/notifications/multiple"):
        response = dp_api.get(path, token)
        assert response.status_code == 404
        assert response.headers["Content-Type"] == ERROR_TYPE
        assert response.content == b'{"errors":[],"message":"No notifications found"}'


def test_pulls_are_fifo_with_remaining(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """Multiple pulls pop in FIFO order and report how many are left."""
    queued = dp.enqueue("pl-id", 7)
    token = dp_api.token()
    first = dp_api.pull(token, 3)
    assert first.status_code == 200
    assert first.headers["Content-Type"] == SUCCESS_TYPE
    assert first.json() == {"notifications": queued[:3], "remaining": 4}
    single = dp_api.get("/notifications", token)
    assert single.json() == queued[3]
    rest = dp_api.pull(token, 100).json()
    assert rest == {"notifications": queued[4:], "remaining": 0}
    assert dp.handed_out("pl-id") == queued
    assert dp.queue_length("pl-id") == 0


def test_limit_defaults_to_one(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """/notifications/multiple without limit pops exactly one."""
    dp.enqueue("pl-id", 2)
    body = dp_api.get("/notifications/multiple", dp_api.token()).json()
    assert len(body["notifications"]) == 1 and body["remaining"] == 1


def test_limit_out_of_range_is_400(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """limit 0, 101 or not a number is 400 Invalid arguments and pops nothing."""
    dp.enqueue("pl-id", 2)
    token = dp_api.token()
    for limit in (0, 101, "x"):
        response = dp_api.get("/notifications/multiple", token, limit=limit)
        assert response.status_code == 400
        assert response.headers["Content-Type"] == ERROR_TYPE
        assert response.json()["message"] == "Invalid arguments"
    assert dp.queue_length("pl-id") == 2


def test_accept_header_is_required(dp: DocPlannerSandbox, dp_api: Any, http: Any) -> None:
    """A pull that does not accept application/vnd.docplanner+json is 406."""
    dp.enqueue("pl-id", 1)
    headers = {"Authorization": f"Bearer {dp_api.token()}", "Accept": "*/*"}
    response = http.get(f"{dp.base_url}/api/v3/integration/notifications", headers=headers)
    assert response.status_code == 406
    assert dp.queue_length("pl-id") == 1


def test_wrong_method_and_unknown_path(dp: DocPlannerSandbox, dp_api: Any, http: Any) -> None:
    """POST on a pull endpoint is 405, an unknown path 404, both as vnd.error."""
    headers = {"Authorization": f"Bearer {dp_api.token()}"}
    response = http.post(f"{dp.base_url}/api/v3/integration/notifications", headers=headers)
    assert response.status_code == 405 and response.headers["Content-Type"] == ERROR_TYPE
    assert http.get(f"{dp.base_url}/api/v3/integration/nope").status_code == 404


def test_notifications_expire_after_72_hours(
    clock: SandboxClock, dp: DocPlannerSandbox, dp_api: Any
) -> None:
    """Notifications enqueued more than 72 h of sandbox time ago are deleted on access."""
    old = dp.enqueue("pl-id", 3)
    clock.advance(71 * 3600)
    new = dp.enqueue("pl-id", 2)
    clock.advance(3600 + 1)
    body = dp_api.pull(dp_api.token(), 100).json()
    assert body == {"notifications": new, "remaining": 0}
    assert dp.expired("pl-id") == old


def test_rate_limit_headers_then_429_then_recovery(
    clock: SandboxClock, dp: DocPlannerSandbox, dp_api: Any
) -> None:
    """GETs count in a sliding sandbox hour: headers on each, 429 when used up, fine after."""
    token = dp_api.token()
    for used in range(1, 51):
        response = dp_api.pull(token, 1)
        assert response.status_code == 404
        assert response.headers["X-RateLimit-Limit"] == "50"
        assert response.headers["X-RateLimit-Used"] == str(used)
        assert response.headers["X-RateLimit-Remaining"] == str(50 - used)
    limited = dp_api.pull(token, 1)
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    reset = datetime.fromisoformat(limited.headers["X-RateLimit-Reset"])
    assert 3500 < reset.timestamp() - clock.now() <= 3600
    assert dp.count_status(429) == 1
    clock.advance(3600)
    token = dp_api.token()
    recovered = dp_api.pull(token, 1)
    assert recovered.status_code == 404
    assert recovered.headers["X-RateLimit-Remaining"] == "49"


def test_concurrent_pulls_pop_each_notification_once(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """Parallel pullers never get the same notification twice and together get all."""
    queued = dp.enqueue("pl-id", 40)
    token = dp_api.token()
    got: list[Any] = []
    lock = threading.Lock()

    def puller() -> None:
        with requests.Session() as session:
            for _ in range(3):
                url = f"{dp.base_url}/api/v3/integration/notifications/multiple"
                headers = {"Authorization": f"Bearer {token}", "Accept": SUCCESS_TYPE}
                response = session.get(url, headers=headers, params={"limit": 3})
                if response.status_code == 200:
                    with lock:
                        got.extend(response.json()["notifications"])

    threads = [threading.Thread(target=puller) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    canonical = sorted(json.dumps(item, sort_keys=True) for item in got)
    assert len(set(canonical)) == len(canonical) == 40
    assert canonical == sorted(json.dumps(item, sort_keys=True) for item in queued)


def test_release_forbidden_for_pull_only_client(dp: DocPlannerSandbox, dp_api: Any) -> None:
    """A client without push gets 403 with the documented body."""
    response = dp_api.release(dp_api.token())
    assert response.status_code == 403
    assert response.json() == {"errors": [], "message": "You are not allowed to use this method"}
    assert dp.release_calls == [("pl-id", 403)]


def test_push_emitter_posts_json_with_token(dp: DocPlannerSandbox, receiver: Any) -> None:
    """Each push is a JSON POST carrying X-Drainer-Token; 2xx ones count as pushed."""
    queued = dp.enqueue("push-id", 3)
    assert dp.push("push-id") == [204, 204, 204]
    assert receiver.bodies() == queued
    headers = receiver.received[0][0]
    assert headers["X-Drainer-Token"] == "tok-123"
    assert headers["Content-Type"] == "application/json"
    assert dp.pushed("push-id") == queued and dp.failed_pushes("push-id") == []
    assert dp.queue_length("push-id") == 3
    dp.push("push-id", drain=True)
    assert dp.queue_length("push-id") == 0


def test_release_redispatches_failed_pushes_once_per_hour(
    clock: SandboxClock, dp: DocPlannerSandbox, dp_api: Any, receiver: Any
) -> None:
    """Failed pushes are re-sent after a 204 release; a second release within the hour is 429."""
    notes = dp.enqueue("push-id", 3)
    receiver.statuses = [500, 204, 503]
    assert dp.push("push-id", notes) == [500, 204, 503]
    assert dp.failed_pushes("push-id") == [notes[0], notes[2]]
    token = dp_api.token("push-id", "push-secret")
    response = dp_api.release(token)
    assert response.status_code == 204 and response.content == b""
    assert dp.wait_redispatch(5)
    assert receiver.bodies() == [notes[0], notes[1], notes[2], notes[0], notes[2]]
    assert dp.failed_pushes("push-id") == []
    again = dp_api.release(token)
    assert again.status_code == 429
    assert 3590 <= int(again.headers["Retry-After"]) <= 3600
    clock.advance(3600)
    assert dp_api.release(dp_api.token("push-id", "push-secret")).status_code == 204
    assert [status for _, status in dp.release_calls] == [204, 429, 204]


def test_push_to_unreachable_url_is_remembered(clock: SandboxClock) -> None:
    """A push nobody answers is status 0 and waits for the next release."""
    from daemon.sandbox import DocPlannerClient

    client = DocPlannerClient("p", "s", push_url="http://127.0.0.1:9/unreachable")
    with DocPlannerSandbox(clients=[client], clock=clock) as sandbox:
        notes = sandbox.enqueue("p", 2)
        assert sandbox.push("p") == [0, 0]
        assert sandbox.failed_pushes("p") == notes


def test_generated_notifications_are_realistic_and_unique(clock: SandboxClock) -> None:
    """Generated events use the documented names and shapes and never repeat."""
    factory = NotificationFactory(seed=7)
    batch = factory.batch(3000, clock.now())
    canonical = {json.dumps(item, sort_keys=True) for item in batch}
    assert len(canonical) == 3000
    names = {item["name"] for item in batch}
    assert names == {*KNOWN_NAMES, UNKNOWN_NAME}
    for item in batch:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0[12]:00", item["created_at"])
        for key in ("facility", "doctor", "address"):
            assert isinstance(item["data"][key]["id"], str)
        if item["name"] == "booking-moved":
            assert "visit_booking" not in item["data"]
            assert {"old_visit_booking", "new_visit_booking"} <= set(item["data"])
        if item["name"] == "presence-marked":
            assert item["data"]["presence"] in ("PRESENT", "ABSENT")
    ids = [
        item["data"][key]["id"]
        for item in batch
        for key in ("visit_booking", "old_visit_booking", "new_visit_booking", "break")
        if key in item["data"]
    ]
    assert len(ids) == len(set(ids)) > 2000
    stamps = [datetime.fromisoformat(item["created_at"]) for item in batch]
    assert stamps == sorted(stamps)
    assert abs(stamps[-1].timestamp() - clock.now()) < 5


def test_arrivals_keep_filling_the_queue(dp: DocPlannerSandbox) -> None:
    """start_arrivals enqueues new notifications until its event is set."""
    halt = dp.start_arrivals(200.0, client_id="pl-id")
    try:
        deadline = threading.Event()
        for _ in range(50):
            if dp.queue_length("pl-id") >= 10:
                break
            deadline.wait(0.05)
    finally:
        halt.set()
    assert dp.queue_length("pl-id") >= 10
