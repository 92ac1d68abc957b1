"""Hostile clients against the real daemon's HTTP server (SPEC §6), on raw sockets.

One daemon (push account ``pl``, a push-only second listener, a 2 s request deadline) on a
real Redis. Every test ends with :func:`settle`: a good push as a canary, then the stream
holds exactly the valid pushes and the dead-letter stream exactly the expected bodies —
nothing valid lost, nothing invalid published. The module's teardown checks that every
line the daemon wrote (stdout and stderr) is a JSON log event: never a plain traceback.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
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
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.server.apps import MAX_PUSH_BYTES
from tests.helpers import Daemon, dp_account, stream_entries, wait_for, write_config

STREAM = "drainer:{docplanner}"
DEADLETTER = "drainer:{deadletter}"
TOKEN = "pl-hostile-token-value"
PUSH = "/push/docplanner/pl"
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
SERVER = """threads = 4
connection_limit = 500
request_deadline = "2s"
idle_timeout = "4s"
max_connections_per_source = 1000
"""
_ids = itertools.count()


@dataclass
class Front:
    daemon: Daemon
    port: int
    push_port: int

    @property
    def pid(self) -> int:
        assert self.daemon.process is not None
        return self.daemon.process.pid


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis) -> Iterator[Front]:
    """The daemon under attack: ``pl`` in push mode on both listeners."""
    directory = tmp_path_factory.mktemp("hostile")
    port, push_port = free_port(), free_port()
    client = DocPlannerClient(
        "pl-id", "pl-secret-value", push_url=f"http://127.0.0.1:{port}{PUSH}", push_token=TOKEN
    )
    with DocPlannerSandbox(clients=[client]) as sandbox:
        config = write_config(
            directory / "drainer.toml",
            redis_server.url,
            docplanner=[dp_account("pl", sandbox, mode="push", push_token=TOKEN)],
            listen_port=port,
        )
        server = f'push_listen = "127.0.0.1:{push_port}"\n{SERVER}'
        text = config.read_text().replace("[server]\n", f"[server]\n{server}", 1)
        config.write_text(text)
        with Daemon(config) as daemon:
            yield Front(daemon, port, push_port)
            assert daemon.stop() == 0
        lines = [line for line in daemon.log.splitlines() if line.strip()]
        events = [json.loads(line) for line in lines]  # a plain-text line fails here
        crashes = {"http.app_error", "http.loop_crashed", "thread.crashed"}
        assert not [e for e in events if e["event"] in crashes]
        assert TOKEN not in daemon.log


# --- helpers ------------------------------------------------------------------------------


def notification() -> dict[str, Any]:
    """A valid notification, different from every other one of this module."""
    data = {"facility": {"id": "1"}, "doctor": {"id": "2"}, "address": {"id": "3"}}
    data["visit_booking"] = {"id": str(next(_ids))}
    return {"name": "slot-booked", "data": data, "created_at": "2026-11-02T10:18:34+01:00"}


def request(
    headers: list[str | bytes], body: bytes = b"", path: str = PUSH, version: str = "HTTP/1.1"
) -> bytes:
    lines = [f"POST {path} {version}".encode(), b"Host: drainer"]
    lines += [h if isinstance(h, bytes) else h.encode("latin-1") for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(data: bytes, size: int = 65536) -> bytes:
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in parts) + b"0\r\n\r\n"


def exchange(port: int, payload: bytes, timeout: float = 10.0) -> tuple[list[int], bytes]:
    """Send ``payload`` and read until the server closes: (status codes, raw bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        raw = b""
        while chunk := sock.recv(65536):  # a timeout raises: the server must close
            raw += chunk
    return [int(code) for code in STATUS.findall(raw)], raw


def push(port: int, document: Any, token: str = TOKEN) -> int:
    headers = {"X-Drainer-Token": token, "Content-Type": "application/json"}
    url = f"http://127.0.0.1:{port}{PUSH}"
    return requests.post(url, data=json.dumps(document), headers=headers, timeout=10).status_code


def settle(
    front: Front,
    client: redis.Redis,
    good: list[dict[str, Any]],
    dead: list[bytes] = (),  # type: ignore[assignment]
) -> None:
    """A canary push, then: the stream holds exactly ``good``, dead letters exactly ``dead``."""
    canary = notification()
    assert push(front.port, canary) == 204
    wanted = {docplanner_event_id("pl", n) for n in [*good, canary]}
    wait_for(lambda: client.xlen(STREAM) >= len(wanted), 10, "the canary on the stream")
    assert {e["event_id"] for e in stream_entries(client, STREAM)} == wanted
    assert len(stream_entries(client, STREAM)) == len(wanted)
    assert sorted(e["raw"] for e in stream_entries(client, DEADLETTER)) == sorted(
        d.decode() for d in dead
    )


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("Threads:"))
    return int(line.split()[1])


def deadline_closes(front: Front) -> float:
    text = front.daemon.metrics()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, listener = sample.name, sample.labels.get("listener")
            if name == "drainer_http_request_deadline_closes_total" and listener == "main":
                return float(sample.value)
    raise AssertionError("no drainer_http_request_deadline_closes_total")


def valid_body() -> bytes:
    return json.dumps(notification()).encode()


# --- framing (RFC 9112 §6.3) ---------------------------------------------------------------

TOK = f"X-Drainer-Token: {TOKEN}"
SMUGGLED = b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: drainer\r\n\r\n"
CONTENT_LENGTHS = ["²", "\u0665", "+5", "  5", "5_0", "-1", "0x5", "5 5", "", "0" * 4999 + "5"]


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([TOK, f"Content-Length: {len(SMUGGLED)}", "Transfer-Encoding: chunked"], SMUGGLED),
        ([TOK, "Transfer-Encoding: chunked", "Content-Length: 4"], b"5\r\nhello\r\n0\r\n\r\n"),
        ([TOK, "Content-Length: 5", "Content-Length: 5"], b"hello"),
        ([TOK, "Content-Length: 6", "Content-Length: 5"], b"hello!"),
    ],
    ids=["te-cl-smuggled-get", "cl-after-te", "duplicate-cl-same", "duplicate-cl-differ"],
)
def test_te_with_cl_or_duplicate_cl_gets_one_400_and_close(
    front: Front, redis_client: redis.Redis, headers: list[str], body: bytes
) -> None:
    """TE + CL (either order) or two Content-Lengths: exactly one 400, connection closed."""
    codes, _ = exchange(front.port, request(headers, body))
    assert codes == [400]
    settle(front, redis_client, [])


@pytest.mark.parametrize("value", CONTENT_LENGTHS, ids=lambda v: repr(v)[:12])
def test_invalid_content_length_gets_400_and_close(
    front: Front, redis_client: redis.Redis, value: str
) -> None:
    """A Content-Length that is not plain ASCII digits (Unicode digits too) gets 400, closed."""
    body = valid_body()
    codes, _ = exchange(front.port, request([TOK, f"Content-Length: {value}".encode()], body))
    assert codes == [400]
    settle(front, redis_client, [])


def test_transfer_encoding_on_http_1_0_gets_400(front: Front, redis_client: redis.Redis) -> None:
    """Transfer-Encoding in an HTTP/1.0 request is faulty framing (RFC 9112 §6.1): 400."""
    payload = request(
        [TOK, "Transfer-Encoding: chunked"], chunked(valid_body()), version="HTTP/1.0"
    )
    assert exchange(front.port, payload)[0] == [400]
    settle(front, redis_client, [])


def test_chunked_pushes_up_to_exactly_1_mib_are_204_and_one_byte_more_is_413(
    front: Front, redis_client: redis.Redis
) -> None:
    """Chunked bodies are accepted (decoded size counts): 1 MiB is 204, 1 MiB + 1 is 413."""
    small = notification()
    big = notification()
    big["data"]["pad"] = ""
    big["data"]["pad"] = "x" * (MAX_PUSH_BYTES - len(json.dumps(big)))
    exact = json.dumps(big).encode()
    assert len(exact) == MAX_PUSH_BYTES
    over = notification()
    over["data"]["pad"] = "x" * (MAX_PUSH_BYTES - len(json.dumps(over)) + 1)
    chunked_header = [TOK, "Transfer-Encoding: chunked", "Connection: close"]
    for document, want in ((small, 204), (big, 204), (over, 413)):
        raw = json.dumps(document).encode()
        assert exchange(front.port, request(chunked_header, chunked(raw)))[0] == [want]
    settle(front, redis_client, [small, big])


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_get_400_and_the_raw_body_is_dead_lettered(
    front: Front, redis_client: redis.Redis, literal: str
) -> None:
    """Non-JSON numbers (RFC 8259) in a push: 400, raw body dead-lettered, never published."""
    raw = json.dumps(notification()).replace('"id": "', f'"n": {literal}, "id": "', 1).encode()
    response = requests.post(
        f"http://127.0.0.1:{front.port}{PUSH}",
        data=raw,
        headers={"X-Drainer-Token": TOKEN},
        timeout=10,
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_json")
    settle(front, redis_client, [], [raw])


# --- authentication before the body --------------------------------------------------------


def test_unknown_account_wrong_and_missing_token_get_byte_identical_401s(
    front: Front, redis_client: redis.Redis
) -> None:
    """Unknown account, wrong token and no token: the same 401, byte for byte (less Date)."""
    body = valid_body()
    cl = f"Content-Length: {len(body)}"
    answers = [
        exchange(front.port, request([TOK, cl], body, path="/push/docplanner/ghost")),
        exchange(front.port, request(["X-Drainer-Token: wrong", cl], body)),
        exchange(front.port, request([cl], body)),
    ]
    assert [codes for codes, _ in answers] == [[401]] * 3
    assert len({re.sub(rb"Date: [^\r]*\r\n", b"", raw) for _, raw in answers}) == 1
    settle(front, redis_client, [])


@pytest.mark.parametrize(
    "framing",
    [
        f"Content-Length: {MAX_PUSH_BYTES}",
        f"Content-Length: {2 * MAX_PUSH_BYTES}",
        "Transfer-Encoding: chunked",
        "Content-Length: 5\r\nExpect: 100-continue",
    ],
    ids=["cl-1mib", "cl-2mib", "chunked", "expect-100"],
)
def test_wrong_token_gets_401_before_any_body_byte_is_sent(
    front: Front, redis_client: redis.Redis, framing: str
) -> None:
    """Headers announcing a body that never comes: 401 at once (not 408, 413 or 100)."""
    codes, _ = exchange(front.port, request(["X-Drainer-Token: wrong", framing]))
    assert codes == [401]
    settle(front, redis_client, [])


@pytest.mark.parametrize(
    "path", ["//push/docplanner/pl", "///push/docplanner/ghost", "http://d/push/docplanner/pl"]
)
def test_extra_slashes_or_absolute_form_do_not_skip_the_early_401(
    front: Front, redis_client: redis.Redis, path: str
) -> None:
    """The gate judges the path the router dispatches: 401 at once, never 100 Continue."""
    framing = f"Content-Length: {MAX_PUSH_BYTES}\r\nExpect: 100-continue"
    codes, _ = exchange(front.port, request(["X-Drainer-Token: wrong", framing], path=path))
    assert codes == [401]
    settle(front, redis_client, [])


@pytest.mark.parametrize(
    ("headers", "version"),
    [
        ([TOK, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], "HTTP/1.1"),
        ([TOK, "Transfer-Encoding: chunked, chunked"], "HTTP/1.1"),
        ([TOK, "Transfer-Encoding: chunked"], "HTTP/1.2"),
        ([TOK, "Transfer-Encoding: chunked"], "HTTP/2.0"),
        ([TOK, *(f"X-Pad-{n}: 1" for n in range(120))], "HTTP/1.1"),
    ],
    ids=["te-twice", "te-chunked-chunked", "http-1.2", "http-2.0", "120-headers"],
)
def test_doubled_codings_unknown_versions_and_header_floods_get_400(
    front: Front, redis_client: redis.Redis, headers: list[str], version: str
) -> None:
    """Chunked once or not at all, HTTP/1.0 or 1.1 only, at most 100 header lines: else 400."""
    payload = request(headers, chunked(valid_body()), version=version)
    codes, _ = exchange(front.port, payload)
    assert codes == [400]
    settle(front, redis_client, [])


def test_head_answers_headers_only_so_a_pipelined_request_stays_in_step(
    front: Front, redis_client: redis.Redis
) -> None:
    """HEAD /healthz then GET /readyz on one connection: two responses, no stray body."""
    payload = (
        b"HEAD /healthz HTTP/1.1\r\nHost: d\r\n\r\n"
        b"GET /readyz HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"
    )
    codes, raw = exchange(front.port, payload)
    assert codes == [200, 200]
    _, _, rest = raw.partition(b"\r\n\r\n")
    assert rest.startswith(b"HTTP/1.1 200"), "the HEAD response carried a body"
    settle(front, redis_client, [])


def test_push_listener_serves_push_alone(front: Front, redis_client: redis.Redis) -> None:
    """``server.push_listen`` answers pushes (204) and nothing else (404)."""
    good = notification()
    assert push(front.push_port, good) == 204
    for path in ("/metrics", "/healthz", "/readyz"):
        response = requests.get(f"http://127.0.0.1:{front.push_port}{path}", timeout=5)
        assert response.status_code == 404
    settle(front, redis_client, [good])


# --- floods ---------------------------------------------------------------------------------


def test_300_slowloris_connections_get_408_while_pushes_and_healthz_answer(
    front: Front, redis_client: redis.Redis
) -> None:
    """300 clients trickling headers are cut at the deadline; good traffic and threads go on."""
    before = threads(front.pid)
    cut_before = deadline_closes(front)
    pad = b"X-Pad: " + b"a" * 200 + b"\r\nHost"
    trickle = request([TOK, "Content-Length: 2"]).replace(b"Host", pad)
    selector = selectors.DefaultSelector()
    slow: dict[socket.socket, bytes] = {}
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", front.port), timeout=5)
        sock.setblocking(False)
        sock.send(trickle[:1])
        slow[sock] = b""
        selector.register(sock, selectors.EVENT_READ)
    good, sent, most = [], 1, before
    try:
        deadline = time.monotonic() + 30
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:  # our trickle crossed the server's close
                    data = b""
                slow[sock] += data
                if not data:
                    selector.unregister(sock)
            for sock in selector.get_map().values():  # a byte every ~0.2 s: far below idle 4 s
                with contextlib.suppress(OSError):
                    sock.fileobj.send(trickle[sent : sent + 1])  # type: ignore[union-attr]
            sent += 1
            document = notification()
            assert push(front.port, document) == 204
            good.append(document)
            assert front.daemon.get("/healthz") == 200
            most = max(most, threads(front.pid))
        assert not selector.get_map(), "every slow connection closed by the server"
    finally:
        selector.close()
        for sock in slow:
            sock.close()
    assert sent < len(trickle), "no slow request ever completed"
    assert deadline_closes(front) - cut_before == 300, "cut by the deadline, not the idle timeout"
    assert {raw[:13] for raw in slow.values()} <= {b"HTTP/1.1 408 ", b""}
    assert most == before, "no thread per connection"
    settle(front, redis_client, good)


def test_connection_flood_past_the_limit_loses_no_push_and_adds_no_thread(
    front: Front, redis_client: redis.Redis
) -> None:
    """600 silent connections (limit 500) and 100 concurrent pushes: every push 204, once."""
    before = threads(front.pid)
    silent = [socket.create_connection(("127.0.0.1", front.port), timeout=5) for _ in range(600)]
    documents = [notification() for _ in range(100)]
    codes: list[int] = []
    most = [before]

    def send(document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        payload = request([TOK, f"Content-Length: {len(body)}", "Connection: close"], body)
        codes.extend(exchange(front.port, payload, timeout=30)[0])

    senders = [threading.Thread(target=send, args=(d,)) for d in documents]
    try:
        for sender in senders:
            sender.start()
        for sender in senders:
            while sender.is_alive():
                most.append(threads(front.pid))
                sender.join(timeout=0.05)
        wait_for(lambda: front.daemon.get("/healthz") == 200, 20, "/healthz after the flood")
    finally:
        for sock in silent:
            sock.close()
    assert codes == [204] * 100
    assert max(most) == before, "no thread per connection"
    settle(front, redis_client, documents)


# --- the WSGI app in-process ----------------------------------------------------------------


class _Exploding:
    def authorized(self, token: str | None) -> bool:
        return token == TOKEN

    def handle(self, token: str | None, body: bytes) -> tuple[int, dict[str, Any] | None]:
        raise RuntimeError(f"boom {TOKEN}")


def test_an_app_error_is_a_500_json_without_traceback_and_no_connection_header() -> None:
    """A failing handler gets 500 with a plain JSON body; the app sets no hop-by-hop header."""
    from io import BytesIO

    from prometheus_client import CollectorRegistry

    from daemon.server.apps import Router

    router = Router(CollectorRegistry(), lambda: True, lambda: (True, {}), {"pl": _Exploding()})
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    environ = {
        "PATH_INFO": PUSH,
        "REQUEST_METHOD": "POST",
        "HTTP_X_DRAINER_TOKEN": TOKEN,
        "CONTENT_LENGTH": "2",
        "wsgi.input": BytesIO(b"{}"),
    }
    body = b"".join(
        router(environ, lambda status, headers, exc=None: seen.append((status, headers)))
    )
    assert seen[0][0] == "500 Internal Server Error"
    assert json.loads(body) == {"error": "internal error"}
    assert "connection" not in {name.lower() for name, _ in seen[0][1]}


def test_a_push_listen_address_in_use_exits_1_with_one_log_event_and_no_stderr(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """``server.push_listen`` already taken: exit 1, one JSON event naming it, nothing on stderr."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "drainer.toml", redis_server.url)
        text = config.read_text().replace(
            "[server]\n", f'[server]\npush_listen = "127.0.0.1:{port}"\n'
        )
        config.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "daemon", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr == ""
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    (fatal,) = [e for e in events if e["event"] == "drainer.fatal"]
    assert fatal["error"].startswith(f"cannot listen on 127.0.0.1:{port}: ")
