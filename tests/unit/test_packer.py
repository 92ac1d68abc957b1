"""HiredisPacker packs exactly what redis-py's own packer packs, and fails the same way."""

from __future__ import annotations

from typing import Any

import pytest
from redis.connection import Connection
from redis.exceptions import DataError

from daemon.sink.connect import HiredisPacker

SAME = [
    ("EVALSHA", "abc", 2, "k1", "k2", 86400000, 0, 1, 3, "id", "payload", "type"),
    (b"XADD", b"s", "*", "f", "v\u00e9\u4e2d\U0001f600"),
    ("SET", "k", 1.5, -0.0, 1e-07, 1e20, 10**30, -7),
    ("CLIENT SETNAME", "drainer"),  # a multi-word name is split, as redis-py does
    (b"CLIENT SETNAME", b"drainer"),
    ("SET", memoryview(b"view"), bytearray(b"array")),  # hiredis refuses some: fallback
    ("SET", "", b""),
]


@pytest.mark.parametrize("args", SAME)
def test_packs_byte_for_byte_like_redis_py(args: tuple[Any, ...]) -> None:
    stock = Connection()  # redis-py's default packer; nothing is connected
    assert b"".join(HiredisPacker().pack(*args)) == b"".join(stock.pack_command(*args))


@pytest.mark.parametrize("bad", [None, True, object()])
def test_refuses_what_redis_py_refuses(bad: object) -> None:
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        HiredisPacker().pack("SET", "k", bad)


def test_a_lone_surrogate_is_an_encoding_error_in_both() -> None:
    with pytest.raises(UnicodeEncodeError):
        Connection().pack_command("SET", "k", "\ud800")
    with pytest.raises(UnicodeEncodeError):
        HiredisPacker().pack("SET", "k", "\ud800")
