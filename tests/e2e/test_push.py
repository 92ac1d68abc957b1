"""DocPlanner push mode end to end: the real CLI, real Redis and the sandbox upstream.

The receiver and the release scheduler in process are in tests/integration/test_push_receiver.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.envelope.docplanner import docplanner_event_id
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, SandboxClock
from daemon.sandbox.events import NotificationFactory
from daemon.server.apps import MAX_PUSH_BYTES
from tests.helpers import Daemon, dp_account, stream_entries, wait_for, wait_settled, write_config

STREAM = "drainer:{docplanner}"
DEADLETTER = "drainer:{deadletter}"
TOKEN = "pl-push-token-value"
LABELS = {"source": "docplanner", "account": "pl"}


# --- helpers ------------------------------------------------------------------------------


def push_client(port: int | None, name: str = "pl") -> DocPlannerClient:
    """A sandbox client that DocPlanner pushes to the daemon on ``port`` (None: pull-only)."""
    url = None if port is None else f"http://127.0.0.1:{port}/push/docplanner/{name}"
    return DocPlannerClient(
        f"{name}-id", f"{name}-secret-value", push_url=url, push_token=TOKEN if url else None
    )


def push_account(sandbox: DocPlannerSandbox, mode: str = "push") -> dict[str, object]:
    return dp_account("pl", sandbox, mode=mode, push_token=TOKEN)


def post(port: int, body: bytes, token: str | None = TOKEN, name: str = "pl") -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Drainer-Token"] = token
    url = f"http://127.0.0.1:{port}/push/docplanner/{name}"
    return requests.post(url, data=body, headers=headers, timeout=10)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a /metrics text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def notification(name: str = "slot-booked", **data: Any) -> dict[str, Any]:
    base = {"facility": {"id": "1"}, "doctor": {"id": "2"}, "address": {"id": "3"}}
    return {"name": name, "data": {**base, **data}, "created_at": "2026-11-02T10:18:34+01:00"}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


@dataclass
class PushDaemon:
    sandbox: DocPlannerSandbox
    daemon: Daemon
    port: int


@pytest.fixture(scope="module")
def pushd(
    tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis
) -> Iterator[PushDaemon]:
    """One daemon for the HTTP-surface tests: ``pl`` in push mode, ``es`` pull-only."""
    directory = tmp_path_factory.mktemp("pushd")
    port = free_port()
    clients = [push_client(port), push_client(None, "es")]
    with DocPlannerSandbox(clients=clients) as sandbox:
        config = write_config(
            directory / "drainer.toml",
            redis_server.url,
            docplanner=[push_account(sandbox), dp_account("es", sandbox)],
            listen_port=port,
        )
        with Daemon(config) as daemon:
            yield PushDaemon(sandbox, daemon, port)
            assert daemon.stop() == 0
        assert TOKEN not in daemon.log


# --- through the real CLI: the HTTP surface -------------------------------------------------


def test_2000_concurrent_pushes_from_8_threads_are_all_204_and_once_on_the_stream(
    pushd: PushDaemon, redis_client: redis.Redis
) -> None:
    """8 threads x 250 pushes: every one answered 204 and on the stream exactly once."""
    before = metric(pushd.daemon.metrics(), "drainer_events_received_total", **LABELS)
    items = NotificationFactory(seed=3).batch(2000, time.time())
    chunks = [items[k::8] for k in range(8)]
    statuses: list[list[int]] = [[] for _ in chunks]

    def send(k: int) -> None:
        statuses[k] = pushd.sandbox.push("pl-id", chunks[k])

    threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(s for chunk in statuses for s in chunk) == {204: 2000}
    # A canary pushed last is published after everything spooled before it (one spool, in
    # order): once it is on the stream, a duplicate of the 2000 would be there too.
    canary = notification(visit_booking={"id": "canary-2000"})
    assert post(pushd.port, body(canary)).status_code == 204
    canary_id = docplanner_event_id("pl", canary)
    wait_for(
        lambda: canary_id in {e["event_id"] for e in stream_entries(redis_client, STREAM)},
        30,
        "the canary after the 2000",
    )
    entries = [e for e in stream_entries(redis_client, STREAM) if e["event_id"] != canary_id]
    assert len(entries) == 2000
    assert {e["event_id"] for e in entries} == {docplanner_event_id("pl", n) for n in items}
    assert {e["delivery"] for e in entries} == {"push"}
    assert "slot-booking" in {e["type"] for e in entries}  # gates are published too
    after = metric(pushd.daemon.metrics(), "drainer_events_received_total", **LABELS)
    assert after - before == 2001


def test_wrong_or_missing_token_is_401_and_nothing_is_spooled(
    pushd: PushDaemon, redis_client: redis.Redis
) -> None:
    """A wrong, empty, prefix-only or missing X-Drainer-Token gets 401 and no entry."""
    payload = body(notification(visit_booking={"id": "401"}))
    for token in ("wrong", "", TOKEN[:-1], TOKEN + "x", None):
        response = post(pushd.port, payload, token=token)
        assert response.status_code == 401, token
    # A good push afterwards goes through the same spool: once it is on the stream, anything
    # a rejected push had spooled would be there before it.
    canary = notification(visit_booking={"id": "canary-401"})
    assert post(pushd.port, body(canary)).status_code == 204
    wait_for(lambda: redis_client.xlen(STREAM) >= 1, 20, "the canary")
    [entry] = stream_entries(redis_client, STREAM)
    assert entry["event_id"] == docplanner_event_id("pl", canary)
    assert redis_client.xlen(DEADLETTER) == 0


def test_unknown_or_pull_only_account_is_the_same_401_as_a_wrong_token(pushd: PushDaemon) -> None:
    """An unknown or pull-only account gets the very 401 a wrong token gets: no probing."""
    payload = body(notification())
    answers = [
        post(pushd.port, payload, name="nope"),
        post(pushd.port, payload, name="es"),
        post(pushd.port, payload, token="wrong"),
    ]
    assert {(r.status_code, r.content) for r in answers} == {
        (401, b'{"error": "missing or wrong push token"}')
    }


def test_body_over_1_mib_is_413_and_exactly_1_mib_is_accepted(
    pushd: PushDaemon, redis_client: redis.Redis
) -> None:
    """Content-Length 1 MiB + 1 gets 413 before the body is read; a 1 MiB notification 204."""
    with socket.create_connection(("127.0.0.1", pushd.port), timeout=5) as sock:
        sock.sendall(
            b"POST /push/docplanner/pl HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"X-Drainer-Token: {TOKEN}\r\nContent-Length: {MAX_PUSH_BYTES + 1}\r\n\r\n".encode()
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    skeleton = body(notification(pad=""))
    exact = body(notification(pad="x" * (MAX_PUSH_BYTES - len(skeleton))))
    assert len(exact) == MAX_PUSH_BYTES
    assert post(pushd.port, exact).status_code == 204
    wait_for(lambda: redis_client.xlen(STREAM) == 1, 10, "the 1 MiB entry")


def test_invalid_json_is_400_and_dead_lettered_with_its_raw_bytes(
    pushd: PushDaemon, redis_client: redis.Redis
) -> None:
    """A truncated JSON body: 400 with a JSON error, dead-lettered verbatim, counted."""
    before = metric(
        pushd.daemon.metrics(), "drainer_deadletter_total", **LABELS, reason="invalid_json"
    )
    raw = body(notification(visit_booking={"id": "żółć"}))[:-7]
    response = post(pushd.port, raw)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
    wait_for(lambda: redis_client.xlen(DEADLETTER) == 1, 10, "dead letter")
    (dead,) = stream_entries(redis_client, DEADLETTER)
    assert dead["raw"] == raw.decode()
    assert (dead["reason"], dead["source"], dead["account"]) == ("invalid_json", "docplanner", "pl")
    assert redis_client.xlen(STREAM) == 0
    after = metric(
        pushd.daemon.metrics(), "drainer_deadletter_total", **LABELS, reason="invalid_json"
    )
    assert after - before == 1


@pytest.mark.parametrize(
    "value",
    [
        ["a", "list"],
        {"data": {}, "created_at": "2026-11-02T10:18:34+01:00"},
        {"name": "slot-booked", "data": "not an object", "created_at": "2026-11-02T10:18:34Z"},
        {"name": "slot-booked", "data": {}, "created_at": "yesterday"},
    ],
    ids=["list", "no-name", "data-not-object", "bad-created-at"],
)
def test_invalid_notification_shape_is_400_and_dead_lettered(
    pushd: PushDaemon, redis_client: redis.Redis, value: Any
) -> None:
    """Valid JSON that is not a notification: 400, dead-lettered as invalid_notification."""
    raw = body(value)
    response = post(pushd.port, raw)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_notification"
    wait_for(lambda: redis_client.xlen(DEADLETTER) == 1, 10, "dead letter")
    (dead,) = stream_entries(redis_client, DEADLETTER)
    assert (dead["reason"], dead["raw"]) == ("invalid_notification", raw.decode())
    assert redis_client.xlen(STREAM) == 0


# --- through the real CLI: delivery scenarios -----------------------------------------------


def test_push_retry_and_pull_of_the_same_notifications_in_mode_both_give_one_entry_each(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """Mode both: 100 notifications pushed twice and pulled too end up once each."""
    port = free_port()
    with DocPlannerSandbox(clients=[push_client(port)]) as sandbox:
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[push_account(sandbox, mode="both")],
            listen_port=port,
        )
        fresh = sandbox.enqueue("pl-id", 100)
        with Daemon(config) as daemon:
            assert sandbox.push("pl-id", fresh) == [204] * 100
            assert sandbox.push("pl-id", fresh) == [204] * 100
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 20, "pulled too")
            wait_for(lambda: redis_client.xlen(STREAM) >= 100, 20, "100 entries")
            wait_settled(daemon)
            assert daemon.stop() == 0
        assert len(sandbox.handed_out("pl-id")) == 100
    entries = stream_entries(redis_client, STREAM)
    assert sorted(e["event_id"] for e in entries) == sorted(
        docplanner_event_id("pl", n) for n in fresh
    )
    assert {e["delivery"] for e in entries} <= {"push", "pull"}


def test_release_at_start_redispatches_pushes_that_failed_while_the_daemon_was_down(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """Pushes refused while down are re-sent after the start-up release and published."""
    port = free_port()
    with DocPlannerSandbox(clients=[push_client(port)]) as sandbox:
        items = sandbox.factory.batch(20, time.time())
        assert sandbox.push("pl-id", items) == [0] * 20  # nobody listening
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[push_account(sandbox)],
            listen_port=port,
        )
        with Daemon(config) as daemon:
            wait_for(lambda: redis_client.xlen(STREAM) >= 20, 20, "re-dispatched entries")
            assert sandbox.release_calls == [("pl-id", 204)]
            assert daemon.stop() == 0
        assert sandbox.failed_pushes("pl-id") == []
    assert sorted(e["event_id"] for e in stream_entries(redis_client, STREAM)) == sorted(
        docplanner_event_id("pl", n) for n in items
    )


def test_release_403_backs_off_and_readyz_names_it_while_pushes_still_work(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """Upstream says pull-only: a release call, /readyz 503 naming it, 403 counted, backoff."""
    with DocPlannerSandbox(clients=[push_client(None)]) as sandbox:
        config = write_config(
            tmp_path / "drainer.toml", redis_server.url, docplanner=[push_account(sandbox)]
        )
        with Daemon(config) as daemon:
            wait_for(lambda: sandbox.release_calls, 10, "a release call")
            wait_for(lambda: daemon.get("/readyz") == 503, 10, "/readyz 503")
            readyz = requests.get(f"http://127.0.0.1:{daemon.port}/readyz", timeout=5).json()
            assert "release forbidden" in readyz["not_ready"]["docplanner:pl:release"]
            metrics = daemon.metrics()
            assert (
                metric(
                    metrics,
                    "drainer_upstream_requests_total",
                    **LABELS,
                    endpoint="release",
                    code="403",
                )
                == 1
            )
            assert post(daemon.port, body(notification())).status_code == 204
            wait_for(lambda: redis_client.xlen(STREAM) == 1, 10, "the push published")
            time.sleep(1.0)  # an observation window: a second release call would show
            assert sandbox.release_calls == [("pl-id", 403)]
            assert daemon.stop() == 0
    assert daemon.log.count("docplanner.release_forbidden") == 1


def test_sigterm_during_pushes_every_204_is_on_the_stream_and_release_recovers_the_rest(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """SIGTERM mid-stream of pushes: every 204 is published; a restart's release adds the rest."""
    port = free_port()
    clock = SandboxClock()
    with DocPlannerSandbox(clients=[push_client(port)], clock=clock) as sandbox:
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[push_account(sandbox)],
            listen_port=port,
        )
        items = sandbox.factory.batch(4 * 1000, time.time())
        chunks = [items[k::4] for k in range(4)]
        statuses: list[list[int]] = [[] for _ in chunks]

        def send(k: int) -> None:
            statuses[k] = sandbox.push("pl-id", chunks[k])

        daemon = Daemon(config).start()
        try:
            threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
            for thread in threads:
                thread.start()
            wait_for(lambda: redis_client.xlen(STREAM) >= 400, 30, "some pushes published")
            assert daemon.stop() == 0
            for thread in threads:
                thread.join()
            accepted = {
                docplanner_event_id("pl", item)
                for chunk, codes in zip(chunks, statuses, strict=True)
                for item, code in zip(chunk, codes, strict=True)
                if code == 204
            }
            refused = len(items) - len(accepted)
            assert 400 <= len(accepted) < len(items), "SIGTERM should land mid-stream"
            published = Counter(e["event_id"] for e in stream_entries(redis_client, STREAM))
            assert accepted <= set(published), "a push answered 204 is missing"
            assert max(published.values()) == 1
            clock.advance(3601)  # the sandbox allows the restart's release now
            daemon.start()
            wait_for(lambda: redis_client.xlen(STREAM) >= len(items), 30, "re-dispatched")
            wait_settled(daemon)
            assert daemon.stop() == 0
        finally:
            if daemon.process is not None:
                daemon.kill()
    published = Counter(e["event_id"] for e in stream_entries(redis_client, STREAM))
    assert set(published) == {docplanner_event_id("pl", n) for n in items}
    assert max(published.values()) == 1
    assert refused > 0
