"""The intake under attack, round two (issue 29, issue 25 items 1-2), against the real daemon.

One daemon, scaled down: ``pl`` (push, any source, default header) and ``es`` (push, header
``X-Api-Key``, allowed from 127.0.0.1 and from what the sandbox publishes at
``/public/docs/public-ips.json``: 127.0.0.3), a push-only second listener, 2 s deadlines,
8 connections per source, 5 failed auths per minute per source, 127.0.0.5 a trusted proxy.
Clients use other loopback addresses (127.0.0.2 ...) as distinct sources.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.envelope.docplanner import docplanner_event_id
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.helpers import Daemon, dp_account, stream_entries, wait_for, write_config

STREAM = "drainer:{docplanner}"
TOKEN = "pl-intake-token-value"
ES_TOKEN = "es-intake-token-value"
PL, ES = "/push/docplanner/pl", "/push/docplanner/es"
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
SERVER = """push_listen = "127.0.0.1:{push_port}"
threads = 4
connection_limit = 64
max_connections_per_source = 8
request_deadline = "2s"
idle_timeout = "2s"
auth_failures_per_minute = 5
trusted_proxies = ["127.0.0.5/32"]
"""
BIG = 512 * 1024


@dataclass
class Front:
    daemon: Daemon
    sandbox: DocPlannerSandbox
    port: int
    push_port: int
    tmp: Path

    @property
    def pid(self) -> int:
        assert self.daemon.process is not None
        return self.daemon.process.pid


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis) -> Iterator[Front]:
    """The daemon under attack (see the module docstring)."""
    directory = tmp_path_factory.mktemp("intake")
    tmp = directory / "tmp"
    tmp.mkdir()
    port, push_port = free_port(), free_port()
    clients = [
        DocPlannerClient("pl-id", "pl-secret-value", f"http://127.0.0.1:{port}{PL}", TOKEN),
        DocPlannerClient(
            "es-id", "es-secret-value", f"http://127.0.0.1:{port}{ES}", ES_TOKEN, "X-Api-Key"
        ),
    ]
    with DocPlannerSandbox(clients=clients, public_ips=["127.0.0.3"]) as sandbox:
        es = dp_account(
            "es",
            sandbox,
            mode="push",
            push_token=ES_TOKEN,
            push_header="X-Api-Key",
            push_allow_from=["127.0.0.1/32"],
            push_allow_published=True,
        )
        config = write_config(
            directory / "drainer.toml",
            redis_server.url,
            docplanner=[dp_account("pl", sandbox, mode="push", push_token=TOKEN), es],
            listen_port=port,
        )
        server = SERVER.format(push_port=push_port)
        config.write_text(config.read_text().replace("[server]\n", f"[server]\n{server}", 1))
        with Daemon(config, env={"TMPDIR": str(tmp)}) as daemon:
            yield Front(daemon, sandbox, port, push_port, tmp)
            assert daemon.stop() == 0
        assert TOKEN not in daemon.log and ES_TOKEN not in daemon.log


# --- helpers ------------------------------------------------------------------------------

_serial = iter(range(10**9))


def notification() -> dict[str, Any]:
    data = {"facility": {"id": "1"}, "doctor": {"id": "2"}, "address": {"id": "3"}}
    data["visit_booking"] = {"id": f"intake-{next(_serial)}"}
    return {"name": "slot-booked", "data": data, "created_at": "2026-11-02T10:18:34+01:00"}


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: drainer", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout, source_address=(source, 0))


def read_until_close(sock: socket.socket) -> bytes:
    raw = b""
    try:
        while chunk := sock.recv(65536):  # a timeout raises: the server must close
            raw += chunk
    except ConnectionResetError:
        pass
    return raw


def exchange(port: int, payload: bytes, source: str = "127.0.0.1") -> tuple[list[int], bytes]:
    """Send ``payload`` (headers announcing a body that never comes) and read to the close."""
    with connect(port, source) as sock:
        sock.sendall(payload)
        raw = read_until_close(sock)
    return [int(code) for code in STATUS.findall(raw)], raw


def post(
    port: int,
    path: str = PL,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
    document: Any = None,
) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, 10, (source, 0))
    try:
        body = json.dumps(document if document is not None else notification())
        connection.request("POST", path, body, {"X-Drainer-Token": TOKEN, **(headers or {})})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def sample(front: Front, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(front.daemon.metrics()):
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                return float(item.value)
    return 0.0


def temp_files(front: Front) -> list[str]:
    """The daemon's open descriptors on files under its TMPDIR (waitress body overflow)."""
    found = []
    for fd in os.listdir(f"/proc/{front.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{front.pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(front.tmp)):
            found.append(target)
    return found


# --- 1. no body read that nobody asked for -------------------------------------------------

BODY = f"Content-Length: {BIG}"
CHUNKED = "Transfer-Encoding: chunked"


@pytest.mark.parametrize(
    ("listener", "request_head", "code"),
    [
        ("main", head("POST", "/nowhere", BODY), 404),
        ("main", head("GET", "/nowhere", CHUNKED), 404),
        ("main", head("POST", "/metrics", BODY), 405),
        ("main", head("GET", "/healthz", BODY), 413),
        ("main", head("GET", "/readyz", CHUNKED), 413),
        ("main", head("PUT", PL, BODY, f"X-Drainer-Token: {TOKEN}"), 405),
        ("push", head("POST", "/metrics", BODY), 404),
        ("push", head("GET", "/healthz"), 404),
        ("push", head("POST", "/anything", CHUNKED), 404),
    ],
    ids=[
        "404-cl",
        "404-chunked",
        "metrics-post",
        "healthz-body",
        "readyz-chunked",
        "push-put",
        "push-listener-metrics",
        "push-listener-healthz",
        "push-listener-other",
    ],
)
def test_a_route_that_takes_no_body_answers_at_header_time_and_closes(
    front: Front, listener: str, request_head: bytes, code: int
) -> None:
    """Headers announcing a body that never comes: the 4xx comes at once, then the close."""
    port = front.port if listener == "main" else front.push_port
    codes, raw = exchange(port, request_head)
    assert codes == [code]
    assert b"Connection: close" in raw


def test_expect_100_continue_is_answered_only_after_push_auth(front: Front) -> None:
    """Expect: 100-continue gets 100 on an authorised push only; elsewhere the refusal."""
    expect = "Expect: 100-continue"
    for payload in (
        head("POST", "/nowhere", BODY, expect),
        head("POST", PL, BODY, expect, "X-Drainer-Token: wrong-token-value-x"),
    ):
        _, raw = exchange(front.port, payload)
        assert b"100 Continue" not in raw
    codes, raw = exchange(front.port, head("GET", "/healthz", expect, "Connection: close"))
    assert codes == [200] and b"100 Continue" not in raw  # no body to wait for
    body = json.dumps(notification()).encode()
    with connect(front.port) as sock:
        cl = f"Content-Length: {len(body)}"
        sock.sendall(head("POST", PL, cl, expect, f"X-Drainer-Token: {TOKEN}", "Connection: close"))
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert read_until_close(sock).startswith(b"HTTP/1.1 204 ")


def test_held_bodies_on_other_paths_cost_no_temporary_file_and_pushes_go_on(
    front: Front,
) -> None:
    """40 bodies of 1 MiB - 1 byte to other paths: all refused at once, no temp file."""
    held: list[socket.socket] = []
    try:
        for n in range(40):
            port = front.port if n % 2 else front.push_port
            sock = connect(port, f"127.0.0.{20 + n % 5}")
            held.append(sock)
            sock.sendall(head("POST", "/x", "Content-Length: 1048576"))
            with contextlib.suppress(OSError):  # answered and closed: the rest never read
                sock.sendall(b"a" * (1048576 - 1))
        assert temp_files(front) == []
        assert post(front.port) == 204
        for sock in held:
            raw = read_until_close(sock)
            assert raw.startswith(b"HTTP/1.1 404 "), raw[:40]
    finally:
        for sock in held:
            sock.close()


# --- 2. deadlines that cannot be reset, per-source caps -------------------------------------


@pytest.mark.parametrize("after_response", [False, True], ids=["fresh", "after-a-response"])
def test_blank_line_tricklers_are_closed_within_the_idle_deadline(
    front: Front, after_response: bool
) -> None:
    """A blank line every 0.3 s never begins a request: closed within idle_timeout (2 s)."""
    socks = [connect(front.port, f"127.0.0.{30 + n}") for n in range(6)]
    try:
        if after_response:
            for sock in socks:
                sock.sendall(head("GET", "/healthz"))
                assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        started, open_ = time.monotonic(), set(range(len(socks)))
        while open_ and time.monotonic() - started < 20:  # idle_timeout is 2 s
            for index in list(open_):
                try:
                    socks[index].sendall(b"\r\n")
                except OSError:
                    open_.discard(index)
            time.sleep(0.3)  # the client's pace, not a wait for the server
            for index in list(open_):
                socks[index].setblocking(False)
                try:
                    if socks[index].recv(4096) == b"":
                        open_.discard(index)
                except BlockingIOError:
                    pass
                except OSError:
                    open_.discard(index)
                socks[index].setblocking(True)
        assert not open_, "blank lines kept the connection open"
        assert post(front.port) == 204
    finally:
        for sock in socks:
            sock.close()


def test_one_source_holds_at_most_its_share_of_connections(front: Front) -> None:
    """20 silent connections from one address: 12 refused at accept (cap 8), counted."""
    before = sample(front, "drainer_http_connections_closed_total", reason="per_source")
    socks = [connect(front.port, "127.0.0.2") for _ in range(20)]
    try:
        for sock in socks:  # every one ends: refused now, or closed idle after 2 s
            sock.settimeout(15)
            assert read_until_close(sock) == b""
        after = sample(front, "drainer_http_connections_closed_total", reason="per_source")
        assert after - before == 12
        assert post(front.port) == 204  # another source is unaffected
    finally:
        for sock in socks:
            sock.close()


def test_at_the_connection_limit_idle_connections_make_room_for_a_push(front: Front) -> None:
    """64 idle connections from 8 addresses fill the listener: the longest idle are closed."""
    before = sample(front, "drainer_http_connections_closed_total", reason="evicted")
    socks = [connect(front.port, f"127.0.0.{40 + n % 8}") for n in range(64)]
    try:
        assert post(front.port) == 204
        after = sample(front, "drainer_http_connections_closed_total", reason="evicted")
        assert after > before
    finally:
        for sock in socks:
            sock.close()


# --- 3. push header, allowlist, trusted proxies ---------------------------------------------


def test_an_account_with_another_header_receives_pushes_with_it_and_401s_without(
    front: Front, redis_client: redis.Redis
) -> None:
    """es agreed X-Api-Key: 204 with it; its token in X-Drainer-Token is a 401."""
    document = notification()
    assert post(front.port, ES, {"X-Api-Key": ES_TOKEN}, document=document) == 204
    assert post(front.port, ES, {"X-Drainer-Token": ES_TOKEN}) == 401
    assert front.sandbox.push("es-id", [notification()]) == [204]  # the sandbox sends it too
    wait_for(lambda: redis_client.xlen(STREAM) >= 2, 10, "es pushes on the stream")


def test_a_push_from_outside_the_allowlist_gets_403_and_is_not_spooled(
    front: Front, redis_client: redis.Redis
) -> None:
    """127.0.0.2 is neither listed nor published: 403 even with the right key; counted."""
    before = sample(front, "drainer_http_push_refusals_total", reason="forbidden_source")
    document = notification()
    code = post(front.port, ES, {"X-Api-Key": ES_TOKEN}, "127.0.0.2", document)
    assert code == 403
    after = sample(front, "drainer_http_push_refusals_total", reason="forbidden_source")
    assert after == before + 1
    canary = notification()
    assert post(front.port, ES, {"X-Api-Key": ES_TOKEN}, document=canary) == 204
    ids = lambda: {e["event_id"] for e in stream_entries(redis_client, STREAM)}  # noqa: E731
    wait_for(lambda: docplanner_event_id("es", canary) in ids(), 10, "the canary published")
    assert docplanner_event_id("es", document) not in ids()


def test_the_published_list_is_fetched_and_allows_its_addresses(front: Front) -> None:
    """127.0.0.3 is in the sandbox's public-ips.json: its push is accepted, 127.0.0.4's not."""
    wait_for(
        lambda: sample(front, "drainer_push_allowlist_published_networks", account="es") == 1,
        20,
        "the published list fetched",
    )
    assert post(front.port, ES, {"X-Api-Key": ES_TOKEN}, "127.0.0.3") == 204
    assert post(front.port, ES, {"X-Api-Key": ES_TOKEN}, "127.0.0.4") == 403


@pytest.mark.parametrize(
    ("source", "forwarded", "code"),
    [
        ("127.0.0.5", "127.0.0.3", 204),  # a trusted proxy forwarding an allowed client
        ("127.0.0.5", "127.0.0.3, 127.0.0.9", 403),  # rightmost untrusted hop decides
        ("127.0.0.5", "127.0.0.9, 127.0.0.5", 403),  # trusted hops are skipped
        ("127.0.0.2", "127.0.0.3", 403),  # not a trusted proxy: the header is ignored
    ],
)
def test_x_forwarded_for_decides_the_source_only_from_trusted_proxies(
    front: Front, source: str, forwarded: str, code: int
) -> None:
    """X-Forwarded-For is honoured only from server.trusted_proxies."""
    headers = {"X-Api-Key": ES_TOKEN, "X-Forwarded-For": forwarded}
    wait_for(
        lambda: sample(front, "drainer_push_allowlist_published_networks", account="es") == 1,
        20,
        "the published list fetched",
    )
    assert post(front.port, ES, headers, source) == code


# --- 5. auth details, HEAD, keep-alive --------------------------------------------------------


def test_failed_auth_is_rate_limited_per_source(front: Front) -> None:
    """Past 5 failures a minute one source gets 429, even with the right key; others not."""
    codes = [post(front.port, PL, {"X-Drainer-Token": "wrong" * 4}, "127.0.0.6") for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    assert post(front.port, PL, source="127.0.0.6") == 429
    assert post(front.port, PL, source="127.0.0.7") == 204
    assert sample(front, "drainer_http_push_refusals_total", reason="rate_limited") >= 3


def test_a_malformed_header_line_is_not_echoed_in_the_error_body(front: Front) -> None:
    """waitress quotes a bad header line in its 400 page: the token must not come back."""
    payload = head("POST", PL, f"X-Drainer-Token: {TOKEN}\rX-Evil: 1", "Content-Length: 2")
    codes, raw = exchange(front.port, payload)
    assert codes == [400]
    assert TOKEN.encode() not in raw and b"X-Evil" not in raw


def test_head_on_metrics_is_the_get_without_a_body(front: Front) -> None:
    """HEAD /metrics (and a refused HEAD): the GET's headers and length, never a body."""
    payload = head("HEAD", "/metrics") + head("GET", "/healthz", "Connection: close")
    codes, raw = exchange(front.port, payload)
    assert codes == [200, 200]
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: " in first and b"chunked" not in first
    assert rest.startswith(b"HTTP/1.1 200 "), "the HEAD response carried a body"
    codes, raw = exchange(front.port, head("HEAD", "/nowhere"))  # refused at header time
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert codes == [404] and b"Content-Length: " in first and rest == b""


def test_a_204_keeps_the_connection_open_when_the_client_asked(front: Front) -> None:
    """Two pushes on one HTTP/1.1 connection: the first 204 does not close it."""
    connection = http.client.HTTPConnection("127.0.0.1", front.port, 10)
    try:
        for _ in range(2):
            body = json.dumps(notification())
            connection.request("POST", PL, body, {"X-Drainer-Token": TOKEN})
            response = connection.getresponse()
            response.read()
            assert response.status == 204
            assert not response.will_close
    finally:
        connection.close()


# --- 4. descriptors --------------------------------------------------------------------------


def test_a_descriptor_limit_below_the_connection_limits_refuses_to_start(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """ulimit -n 300 under two listeners of 1000 connections: exit 2 and one line."""
    config = write_config(tmp_path / "drainer.toml", redis_server.url)
    server = f'[server]\npush_listen = "127.0.0.1:{free_port()}"\n'
    config.write_text(config.read_text().replace("[server]\n", server, 1))

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    result = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=low_limit,
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "server.connection_limit" in result.stderr and "300" in result.stderr
