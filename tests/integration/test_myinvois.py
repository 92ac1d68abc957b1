"""MyInvois polling: ``tick()`` against the sandbox and a real Redis (the CLI: tests/e2e)."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.myinvois import myinvois_created
from daemon.errors import AuthError, BadRequestError, ForbiddenError
from daemon.metrics import Metrics
from daemon.publisher import Publisher
from daemon.sandbox import MyInvoisClient, MyInvoisSandbox
from daemon.settings import MyInvoisAccount
from daemon.sink import RedisSink, connect
from daemon.sources.myinvois.api import iso_z, parse_page, whole_seconds
from daemon.sources.myinvois.poll import MyInvoisPoller, build_api
from daemon.sources.myinvois.window import RangeCursor, WatermarkCursor, Window, build_batch
from daemon.spool import SpoolBudget, SpoolLog
from daemon.worker import Backoff
from tests.helpers import stream_entries, wait_for

STREAM = "drainer:{myinvois}"
DEADLETTER = "drainer:{deadletter}"
WATERMARK = "drainer:{myinvois}:watermark:acme"
TIN = "C9876543210"
FAST = 6000  # requests per minute for tests that are not about the budget

MakePoller = Callable[..., MyInvoisPoller]


def myinvois_order_key(item: dict[str, Any]) -> tuple[datetime, str]:
    """Oldest first: creationDateTime, then notificationId."""
    return (myinvois_created(item), str(item["notificationId"]))


def sandbox_clients() -> list[MyInvoisClient]:
    return [
        MyInvoisClient(client_id="acme-id", client_secret="acme-id-secret-value"),
        MyInvoisClient(client_id="agent-id", client_secret="agent-id-secret", on_behalf_of=TIN),
    ]


@pytest.fixture
def sandbox() -> Iterator[MyInvoisSandbox]:
    """Identity service and API on two different ports, as production may have them."""
    with MyInvoisSandbox(
        clients=sandbox_clients(), requests_per_minute=FAST, identity_port=0
    ) as server:
        yield server


def account(
    sandbox: MyInvoisSandbox, name: str = "acme", client_id: str = "acme-id", **extra: Any
) -> MyInvoisAccount:
    values: dict[str, Any] = {
        "name": name,
        "base_url": sandbox.base_url,
        "identity_url": sandbox.identity_url,
        "client_id": client_id,
        "client_secret": f"{client_id}-secret-value"
        if client_id == "acme-id"
        else "agent-id-secret",
        "interval": 0.2,
        "overlap": 600,
        "requests_per_minute": FAST,
        "logins_per_minute": FAST,
        **extra,
    }
    return MyInvoisAccount(**values)


# Each poller's publisher, wired as the daemon wires them (poller -> spool -> publisher).
PUBLISHERS: dict[MyInvoisPoller, Publisher] = {}


@pytest.fixture
def make_poller(
    redis_server: LocalRedis, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[MakePoller]:
    """Builds pollers (with a spool and a publisher) on their own Redis client and session.

    ``redis_client`` empties the shared database first: the sandbox's ids are seeded, so
    another test's events would otherwise count as duplicates here.
    """
    made: list[MyInvoisPoller] = []

    def make(acct: MyInvoisAccount, redis_url: str | None = None) -> MyInvoisPoller:
        metrics = Metrics(CollectorRegistry(), [("myinvois", acct.name)])
        client = connect(redis_url or redis_server.url, timeout=1.0)
        sink = RedisSink(client, 86400.0, 0)
        spool = SpoolLog(tmp_path / f"spool-{len(made)}", SpoolBudget(1 << 30))
        publisher = Publisher(
            "myinvois", acct.name, spool, sink, metrics, DEADLETTER,
            watermark_stream=STREAM, count_deadletters=True,
        )  # fmt: skip
        publisher._backoff = Backoff(base=0.05, cap=0.5)
        api = build_api(acct, metrics)
        cursor = WatermarkCursor(acct, publisher.read_watermark, metrics, safety_lag=1.0)
        backoff = Backoff(base=0.05, cap=0.5)
        poller = MyInvoisPoller(
            acct, api, spool, metrics, STREAM, DEADLETTER, cursor, backoff=backoff,
            refused_backoff=Backoff(base=0.05, cap=0.3),
        )  # fmt: skip
        made.append(poller)
        PUBLISHERS[poller] = publisher
        return poller

    yield make
    for poller in made:
        poller.api.http.close()
        PUBLISHERS.pop(poller).sink.client.close()


def publisher_of(poller: MyInvoisPoller) -> Publisher:
    return PUBLISHERS[poller]


def run_until(poller: MyInvoisPoller, done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Tick the poller and then its publisher, as their two threads do, until ``done()``."""
    publisher = PUBLISHERS[poller]
    deadline = time.monotonic() + timeout
    while not done():
        errors = (poller.health.last_error, publisher.health.last_error)
        assert time.monotonic() < deadline, f"timed out; last errors {errors}"
        wait = poller.tick(time.monotonic())
        if publisher.spool.pending_records:
            wait = min(wait, publisher.tick(time.monotonic()))
        if wait > 0:
            time.sleep(min(wait, 0.05))  # poll interval of a loop with a deadline


def pause_until(poller: MyInvoisPoller, seconds: float) -> None:
    """Keep ticking for ``seconds``."""
    end = time.monotonic() + seconds
    run_until(poller, lambda: time.monotonic() > end)


def wait_past_safety_lag(moment: float) -> None:
    """Wait until a window started now ends after ``moment``: its dateTo is the wall clock
    minus the pollers' 1 s safety lag, in whole seconds."""
    wait_for(lambda: whole_seconds(time.time() - 1.0).timestamp() > moment, 10, "the safety lag")


def catch_up(poller: MyInvoisPoller, timeout: float = 20.0) -> None:
    """Tick until a window that started now has completed and reached ``now - lag``."""
    assert poller.window is None
    start = poller.windows_completed
    run_until(
        poller,
        lambda: (
            poller.windows_completed > start
            and poller.caught_up
            and poller.window is None
            and not poller.spool.pending_records
        ),
        timeout,
    )


def finish(poller: MyInvoisPoller, timeout: float = 20.0) -> None:
    """Tick until the poller has caught up and everything it read is on the stream."""
    run_until(
        poller,
        lambda: poller.window is None and poller.caught_up and not poller.spool.pending_records,
        timeout,
    )


def token_requests(sandbox: MyInvoisSandbox) -> int:
    """Logins served by the identity service (none may reach the API port)."""
    assert not any(path == "/connect/token" for _, path, _ in sandbox.requests)
    identity = sandbox.identity if sandbox.identity is not None else sandbox
    return sum(1 for method, path, _ in identity.requests if path == "/connect/token")


def sample(poller: MyInvoisPoller, name: str, **labels: str) -> float:
    value = poller.metrics.registry.get_sample_value(
        name, {"source": "myinvois", "account": poller.account.name, **labels}
    )
    return value or 0.0


def now_utc() -> datetime:
    return datetime.fromtimestamp(int(time.time()), UTC)


# --- pure pieces ------------------------------------------------------------------------


def test_parse_page_and_batch_order_dedupe_and_deadletters() -> None:
    """A page parses; a window's items come out oldest first, once each, bad ones dead-lettered."""
    items, has_next = parse_page(b'{"result": [], "metadata": {"hasNext": true}}', 100)
    assert (items, has_next) == ([], False)  # an empty page ends the window
    with pytest.raises(Exception, match="not JSON"):
        parse_page(b'{"result": [', 100)
    a = {"notificationId": "B", "creationDateTime": "2026-01-01T00:00:02Z", "typeId": "6"}
    b = {"notificationId": "A", "creationDateTime": "2026-01-01T00:00:02Z", "typeId": "7"}
    c = {"notificationId": "C", "creationDateTime": "2026-01-01T00:00:01", "typeId": 33}
    bad = {"creationDateTime": "2026-01-01T00:00:00Z"}
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    got = datetime(2026, 1, 3, tzinfo=UTC)
    window.add_page([a, b, bad], True, got)
    window.add_page([b, c, bad], False, got)  # a shifted page repeats b
    batch = build_batch("acme", STREAM, DEADLETTER, window)
    ids = [e.event_id for e in batch.entries]
    assert ids[:3] == ["myinvois:acme:C", "myinvois:acme:A", "myinvois:acme:B"]
    assert batch.notifications == 3 and batch.deadletters == 2
    assert ids[3] == ids[4], "the same bad bytes get the same dead-letter id"
    assert batch.entries[0].fields["type"] == "33"
    assert batch.entries[0].fields["occurred_at"] == "2026-01-01T00:00:01Z"


def test_range_cursor_splits_into_bounded_windows() -> None:
    """A backfill range is walked oldest first in windows of at most one day."""
    since = datetime(2026, 1, 1, tzinfo=UTC)
    cursor = RangeCursor(since, since + timedelta(days=2, hours=12))
    spans = []
    while (window := cursor.next_window()) is not None:
        spans.append((window.date_from, window.date_to))
        cursor.window_done(window)
    assert len(spans) == 3 and spans[0][0] == since and spans[-1][1] == cursor.until
    assert all(b - a <= timedelta(days=1) for a, b in spans)
    assert iso_z(since) == "2026-01-01T00:00:00Z"


# --- tick() against the sandbox and a real Redis -----------------------------------------


def test_three_days_published_once_oldest_first_with_every_field(
    sandbox: MyInvoisSandbox, make_poller: MakePoller, redis_client: redis.Redis
) -> None:
    """1,500 notifications over 3 days, paged at 100: each once, oldest first, §3 fields right."""
    now = now_utc()
    start = now - timedelta(days=3, minutes=5)
    early = sandbox.add_notifications(
        "acme-id", 10, start=start - timedelta(hours=2), end=start, sent_late_fraction=0
    )
    added = sandbox.add_notifications(
        "acme-id",
        1500,
        start=start + timedelta(minutes=1),
        end=now - timedelta(seconds=30),
        sent_late_fraction=0,  # the stream is oldest first overall only when sent = created
    )
    assert early
    poller = make_poller(account(sandbox, start_at=start + timedelta(seconds=1)))
    catch_up(poller)
    entries = stream_entries(redis_client, STREAM)
    expected = sorted(added, key=myinvois_order_key)
    assert [json.loads(e["payload"]) for e in entries] == expected
    for entry, original in zip(entries, expected, strict=True):
        assert entry["event_id"] == f"myinvois:acme:{original['notificationId']}"
        assert entry["source"] == "myinvois" and entry["account"] == "acme"
        assert entry["type"] == str(int(original["typeId"]))
        assert entry["occurred_at"] == original["creationDateTime"]
        assert entry["received_at"].endswith("Z") and entry["delivery"] == "poll"
        assert entry["schema"] == "1"
    assert poller.windows_completed >= 4, "3 days are read in windows of at most 1 day"
    assert token_requests(sandbox) == 1, "the token is cached"
    watermark = float(redis_client.get(WATERMARK) or 0)
    assert time.time() - 10 < watermark <= time.time()
    assert sample(poller, "drainer_myinvois_watermark_timestamp_seconds") == watermark
    assert sample(poller, "drainer_events_published_total") == 1500
    assert redis_client.xlen(DEADLETTER) == 0


def test_new_and_late_arrivals_while_running_are_published_once(
    sandbox: MyInvoisSandbox, make_poller: MakePoller, redis_client: redis.Redis
) -> None:
    """200 new + 20 late arrivals (inside the overlap) while pages shift: each exactly once."""
    now = now_utc()
    base = sandbox.add_notifications(
        "acme-id", 30, start=now - timedelta(minutes=9), end=now - timedelta(minutes=1)
    )
    poller = make_poller(account(sandbox, page_size=20, start_at=now - timedelta(minutes=10)))
    catch_up(poller)
    new: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    for _ in range(5):  # windows end on whole seconds: about one window per second
        wall = time.time()
        stamps = [datetime.fromtimestamp(wall - i * 0.02, UTC) for i in range(40)]
        new += sandbox.add_notifications_at("acme-id", stamps)
        late += sandbox.add_notifications_at("acme-id", [now_utc() - timedelta(seconds=120)] * 4)
        run_until(poller, lambda: poller.window is not None and poller.window.pages >= 2)
        pause_until(poller, 0.3)
    wait_past_safety_lag(wall)  # a window started now covers the last arrivals
    if poller.window is not None:
        run_until(poller, lambda: poller.window is None)
    catch_up(poller)
    ids = Counter(e["event_id"] for e in stream_entries(redis_client, STREAM))
    assert len(new) == 200 and len(late) == 20
    assert max(ids.values()) == 1
    assert set(ids) == {f"myinvois:acme:{n['notificationId']}" for n in base + new + late}
    assert publisher_of(poller).duplicates > 0, "the overlap was re-read and de-duplicated"


def test_restart_resumes_from_the_watermark_and_republishes_nothing(
    sandbox: MyInvoisSandbox, make_poller: MakePoller, redis_client: redis.Redis
) -> None:
    """A new poller starts at the stored watermark minus the overlap and publishes nothing new."""
    now = now_utc()
    sandbox.add_notifications("acme-id", 300, start=now - timedelta(hours=2), end=now)
    acct = account(sandbox, start_at=now - timedelta(hours=3))
    first = make_poller(acct)
    catch_up(first)
    length = redis_client.xlen(STREAM)
    assert length == 300
    second = make_poller(acct)
    assert isinstance(second.cursor, WatermarkCursor)
    wait_past_safety_lag(float(redis_client.get(WATERMARK) or 0))  # a window to read
    window = second.cursor.next_window()
    stored = float(redis_client.get(WATERMARK) or 0)
    assert window is not None and window.date_from.timestamp() == int(stored - 600)
    catch_up(second)
    assert redis_client.xlen(STREAM) == length
    assert publisher_of(second).published == 0 and second.windows_completed == 1
    assert second.requests <= 2, "only the overlap was read again"


def test_budget_equal_to_the_sandbox_limit_gets_no_429(
    make_poller: MakePoller, redis_client: redis.Redis
) -> None:
    """With our budget equal to the upstream limit, requests are spread and none gets 429."""
    rate = 300
    with MyInvoisSandbox(clients=sandbox_clients(), requests_per_minute=rate) as sandbox:
        now = now_utc()
        sandbox.add_notifications("acme-id", 480, start=now - timedelta(minutes=9), end=now)
        poller = make_poller(
            account(
                sandbox,
                page_size=10,
                requests_per_minute=rate,
                start_at=now - timedelta(minutes=10),
            )
        )
        sent: list[float] = []
        send = poller.api.http.send

        def recording(*args: Any, **kwargs: Any) -> Any:
            if args[2] == "notifications":
                sent.append(time.monotonic())
            return send(*args, **kwargs)

        poller.api.http.send = recording  # type: ignore[method-assign]
        catch_up(poller, timeout=30)
        assert sandbox.count_status(429) == 0
    assert len(sent) == 48, "480 notifications in pages of 10"
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.9 * 60 / rate, "the budget spreads requests, never bursts"
    assert redis_client.xlen(STREAM) == 480


def test_faults_lose_nothing_and_dead_letter_only_bad_items(
    sandbox: MyInvoisSandbox, make_poller: MakePoller, redis_client: redis.Redis
) -> None:
    """5xx, WAF, resets, truncated pages, token expiry, malformed items: nothing lost."""
    now = now_utc()
    sandbox.add_notifications("acme-id", 200, start=now - timedelta(hours=1), end=now)
    sandbox.faults.script(
        ["500", "ok", "reset", "malformed", "truncate", "ok", "waf", "token_expired",
         "ok", "503", "malformed", "truncate"]
    )  # fmt: skip
    poller = make_poller(account(sandbox, page_size=25, start_at=now - timedelta(hours=2)))
    catch_up(poller, timeout=30)
    assert sandbox.faults.pending() == 0
    ids = Counter(e["event_id"] for e in stream_entries(redis_client, STREAM))
    assert max(ids.values()) == 1
    assert set(ids) == {
        f"myinvois:acme:{n['notificationId']}" for n in sandbox.notifications("acme-id")
    }
    dead = stream_entries(redis_client, DEADLETTER)
    malformed = sandbox.malformed_served("acme-id")
    assert len(malformed) == 2 and len(dead) == 2
    assert {d["reason"] for d in dead} == {"invalid_notification"}
    assert all(any(m["notificationDeliveryId"] in d["raw"] for d in dead) for m in malformed)
    assert sample(poller, "drainer_deadletter_total", reason="invalid_notification") == 2
    assert poller.health.failing_since is None, "recovered after the faults"


def test_429_is_honoured_before_any_further_request(
    sandbox: MyInvoisSandbox, make_poller: MakePoller
) -> None:
    """After a 429 the poller waits at least Retry-After and sends nothing meanwhile."""
    now = now_utc()
    sandbox.add_notifications("acme-id", 20, start=now - timedelta(hours=1), end=now)
    poller = make_poller(account(sandbox, start_at=now - timedelta(hours=2)))
    sandbox.faults.script(["429"])
    # Tick until the 429 has come back (the first tick may log in or wait for the budget).
    deadline = time.monotonic() + 20
    while sandbox.count_status(429) == 0:
        assert time.monotonic() < deadline, "the scripted 429 was never served"
        started = time.monotonic()
        wait = poller.tick(started)
    assert sandbox.count_status(429) == 1
    assert wait >= 0.9, "Retry-After: 1 (and the rate headers) are honoured"
    retry_at = started + wait
    served = len(sandbox.requests)
    while (now := time.monotonic()) < retry_at - 0.05:
        assert poller.tick(now) > 0, "no request before Retry-After is over"
        assert len(sandbox.requests) == served
        time.sleep(0.05)  # poll interval: ticks until Retry-After is over
    assert sample(poller, "drainer_rate_limited_total") == 1
    assert poller.health.last_error is not None and "429" in poller.health.last_error


def test_redis_down_pauses_polling_and_keeps_the_watermark(
    sandbox: MyInvoisSandbox, make_poller: MakePoller, own_redis: LocalRedis
) -> None:
    """Redis down mid-window: the window waits in the spool, no more requests, no watermark."""
    now = now_utc()
    sandbox.add_notifications("acme-id", 60, start=now - timedelta(hours=1), end=now)
    poller = make_poller(
        account(sandbox, page_size=10, start_at=now - timedelta(hours=2)), own_redis.url
    )
    run_until(poller, lambda: poller.window is not None and poller.window.pages >= 2)
    own_redis.stop()
    publisher = publisher_of(poller)
    run_until(poller, lambda: publisher.health.failing_since is not None)
    assert poller.window is None and poller.spool.pending_records == 1, "the window is spooled"
    requests = poller.requests
    pause_until(poller, 0.5)
    assert poller.requests == requests, "no upstream request while the window is unpublished"
    own_redis.start()
    run_until(poller, lambda: not poller.spool.pending_records)
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        ids = Counter(e["event_id"] for e in stream_entries(client, STREAM))
        assert len(ids) == 60 and max(ids.values()) == 1
        assert client.get(WATERMARK) is not None
    finally:
        client.close()
    assert publisher.health.failing_since is None


def test_intermediary_logs_in_on_behalf_of_the_tin_and_refreshes_once_on_401(
    sandbox: MyInvoisSandbox, make_poller: MakePoller
) -> None:
    """onbehalfof goes on the token request: one login, pages read; a 401 logs in once more."""
    now = now_utc()
    sandbox.add_notifications("agent-id", 50, start=now - timedelta(hours=1), end=now)
    start = now - timedelta(hours=2)
    acct = account(
        sandbox, name="agent", client_id="agent-id", on_behalf_of=TIN, page_size=10, start_at=start
    )
    poller = make_poller(acct)
    catch_up(poller)
    catch_up(poller)
    assert token_requests(sandbox) == 1
    sandbox.expire_tokens()
    catch_up(poller)
    assert token_requests(sandbox) == 2
    assert poller.health.last_error is None and publisher_of(poller).published == 50


def test_intermediary_without_on_behalf_of_is_a_visible_403_state(
    sandbox: MyInvoisSandbox, make_poller: MakePoller
) -> None:
    """A plain login's token cannot read the taxpayer: 403, named in health, counted, retried."""
    start = now_utc() - timedelta(hours=2)
    plain = make_poller(account(sandbox, name="plain", client_id="agent-id", start_at=start))
    run_until(plain, lambda: sample(plain, "drainer_upstream_forbidden_total") >= 2)
    assert isinstance(plain.last_error, ForbiddenError)
    assert "403" in str(plain.health.detail["not_ready"])
    wrong = make_poller(account(sandbox, name="wrong", client_id="agent-id",
                                on_behalf_of="C0000000000", start_at=start))  # fmt: skip
    run_until(wrong, lambda: wrong.health.failing_since is not None)
    assert isinstance(wrong.last_error, AuthError), "a TIN it does not represent: login refused"


def intermediary_3_days(sandbox: MyInvoisSandbox) -> tuple[list[dict[str, Any]], datetime]:
    now = now_utc()
    start = now - timedelta(days=3, minutes=5)
    added = sandbox.add_notifications(
        "agent-id", 900, start=start + timedelta(minutes=1), end=now - timedelta(seconds=30)
    )
    return added, start


def test_intermediary_drains_3_days_once_from_a_separate_identity_port_across_a_restart(
    sandbox: MyInvoisSandbox, make_poller: MakePoller, redis_client: redis.Redis
) -> None:
    """Tokens from the identity port, 3 days drained exactly once, a restart keeps the watermark."""
    added, start = intermediary_3_days(sandbox)
    late = [n for n in added if n["creationDateTime"][:13] != n["receivedDateTime"][:13]]
    assert late, "some notifications were sent hours after they were created"
    acct = account(
        sandbox, name="agent", client_id="agent-id", on_behalf_of=TIN, page_size=50,
        start_at=start, interval=0.2,
    )  # fmt: skip
    watermark_key = "drainer:{myinvois}:watermark:agent"
    first = make_poller(acct)
    run_until(
        first, lambda: first.windows_completed >= 2 and not first.spool.pending_records
    )  # the middle of the history: two of the four day-windows are on the stream
    stored = float(redis_client.get(watermark_key) or 0)
    assert start.timestamp() < stored < time.time() - 86400
    second = make_poller(acct)  # the restart: a new process finds the watermark
    assert isinstance(second.cursor, WatermarkCursor)
    window = second.cursor.next_window()
    assert window is not None and window.date_from.timestamp() == int(stored - acct.overlap)
    catch_up(second)
    ids = Counter(e["event_id"] for e in stream_entries(redis_client, STREAM))
    assert max(ids.values()) == 1
    assert set(ids) == {f"myinvois:agent:{n['notificationId']}" for n in added}
    assert float(redis_client.get(watermark_key) or 0) > stored
    assert token_requests(sandbox) == 2, "one login per process, on the identity port"
    assert sandbox.identity is not None and sandbox.identity.port != sandbox.port


def test_a_burst_of_403_on_pages_backs_off_and_resumes_without_restart(
    sandbox: MyInvoisSandbox, make_poller: MakePoller, redis_client: redis.Redis
) -> None:
    """Five 403s mid-history: named in health, counted; afterwards every item published once."""
    now = now_utc()
    added = sandbox.add_notifications("acme-id", 300, start=now - timedelta(hours=5), end=now)
    poller = make_poller(account(sandbox, page_size=20, start_at=now - timedelta(hours=6)))
    run_until(poller, lambda: poller.requests >= 3)
    sandbox.faults.script(["403"] * 5)
    run_until(poller, lambda: "not_ready" in poller.health.detail)
    assert "403" in str(poller.health.detail["not_ready"])
    finish(poller)
    assert sandbox.faults.pending() == 0 and sandbox.count_status(403) == 5
    assert "not_ready" not in poller.health.detail and poller.health.failing_since is None
    assert sample(poller, "drainer_upstream_forbidden_total") == 5
    ids = Counter(e["event_id"] for e in stream_entries(redis_client, STREAM))
    assert max(ids.values()) == 1
    assert set(ids) == {f"myinvois:acme:{n['notificationId']}" for n in added}


def test_a_page_size_the_server_refuses_is_halved_until_accepted(
    make_poller: MakePoller, redis_client: redis.Redis
) -> None:
    """Administrators' maximum 30: 100 -> 50 -> 25, counted twice; everything published once."""
    with MyInvoisSandbox(
        clients=sandbox_clients(), requests_per_minute=FAST, max_page_size=30
    ) as sandbox:
        now = now_utc()
        added = sandbox.add_notifications("acme-id", 120, start=now - timedelta(hours=1), end=now)
        poller = make_poller(account(sandbox, page_size=100, start_at=now - timedelta(hours=2)))
        catch_up(poller)
        assert poller.page_size == 25
        assert sample(poller, "drainer_myinvois_page_size_reduced_total") == 2
        assert sandbox.count_status(400) == 2, "each refused size was asked for once"
    ids = Counter(e["event_id"] for e in stream_entries(redis_client, STREAM))
    assert max(ids.values()) == 1 and len(ids) == len(added)


def test_any_other_400_is_a_visible_failing_state_that_clears(
    sandbox: MyInvoisSandbox, make_poller: MakePoller, redis_client: redis.Redis
) -> None:
    """A 400 that does not name pageSize: not_ready names it, the page size stays, then clears."""
    now = now_utc()
    sandbox.add_notifications("acme-id", 40, start=now - timedelta(hours=1), end=now)
    sandbox.faults.script(["400", "400", "400"])
    poller = make_poller(account(sandbox, page_size=20, start_at=now - timedelta(hours=2)))
    run_until(poller, lambda: "not_ready" in poller.health.detail)
    assert "400" in str(poller.health.detail["not_ready"])
    assert isinstance(poller.last_error, BadRequestError)
    finish(poller)
    assert poller.page_size == 20 and "not_ready" not in poller.health.detail
    assert sample(poller, "drainer_myinvois_page_size_reduced_total") == 0
    assert redis_client.xlen(STREAM) == 40


def test_notifications_sent_hours_after_creation_are_published_once(
    sandbox: MyInvoisSandbox, make_poller: MakePoller, redis_client: redis.Redis
) -> None:
    """Created before the watermark, sent after it: read in the window of the date sent, once."""
    now = now_utc()
    poller = make_poller(account(sandbox, start_at=now - timedelta(minutes=30)))
    early = sandbox.add_notifications(
        "acme-id", 20, start=now - timedelta(minutes=20), end=now - timedelta(minutes=1)
    )
    catch_up(poller)
    watermark = float(redis_client.get(WATERMARK) or 0)
    wait_past_safety_lag(watermark)  # the next sent times are after the watermark
    sent = [datetime.fromtimestamp(time.time() - 1, UTC)] * 10
    late = sandbox.add_notifications_at("acme-id", sent, created_before=5 * 3600)
    assert all(n["creationDateTime"] < iso_z(now - timedelta(hours=4)) for n in late)
    wait_past_safety_lag(sent[0].timestamp())  # a window started now reads them
    catch_up(poller)
    ids = Counter(e["event_id"] for e in stream_entries(redis_client, STREAM))
    assert max(ids.values()) == 1
    assert set(ids) == {f"myinvois:acme:{n['notificationId']}" for n in early + late}
    assert float(redis_client.get(WATERMARK) or 0) > watermark
