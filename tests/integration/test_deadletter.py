"""``drainer deadletter`` list / show / redrive against a real Redis (in-process CLI)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from daemon.cli import main
from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.envelope.docplanner import docplanner_event_id
from daemon.envelope.entries import Invalid, deadletter_entry
from daemon.sink import RedisSink, connect
from tests.helpers import stream_entries, write_config

DOCPLANNER = "drainer:{docplanner}"
MYINVOIS = "drainer:{myinvois}"
DEADLETTER = "drainer:{deadletter}"
RECEIVED = datetime(2026, 11, 2, 10, 20, tzinfo=UTC)


def notification(n: int) -> dict[str, object]:
    return {"name": "slot-booked", "data": {"n": n}, "created_at": "2026-11-02T10:18:34Z"}


def seed(url: str) -> None:
    """Dead letters as the daemon writes them: refused DocPlanner items, a body the expander
    raised on, a MyInvois item that is still invalid, and one of another account."""
    letters = []
    for n in (1, 2):
        raw = json.dumps(notification(n)).encode()
        invalid = Invalid("publish_refused", "WRONGTYPE Operation against a key", raw)
        letters.append(deadletter_entry(DEADLETTER, "docplanner", "pl", invalid, RECEIVED, n))
    body = json.dumps({"notifications": [notification(3), notification(4)], "remaining": 0})
    invalid = Invalid("expand_failed", "ZeroDivisionError: a bug", body.encode())
    letters.append(deadletter_entry(DEADLETTER, "docplanner", "pl", invalid, RECEIVED))
    item = {"notificationId": "N1", "creationDateTime": "2026-11-02T10:18:34Z", "typeId": "³"}
    invalid = Invalid("invalid_notification", "typeId", json.dumps(item).encode())
    letters.append(deadletter_entry(DEADLETTER, "myinvois", "acme", invalid, RECEIVED))
    raw = json.dumps(notification(5)).encode()
    invalid = Invalid("publish_refused", "NOPERM", raw)
    letters.append(deadletter_entry(DEADLETTER, "docplanner", "es", invalid, RECEIVED))
    client = connect(url)
    RedisSink(client, 86400.0, 0).publish(letters)
    client.close()


@pytest.fixture
def config(tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis) -> Path:
    """A config on the suite's Redis (emptied first) with the seeded dead letters; its
    secret file does not exist: deadletter needs no upstream secret."""
    seed(redis_server.url)
    account = {
        "name": "pl",
        "base_url": "https://www.znanylekarz.pl",
        "client_id": "pl-id",
        "client_secret_file": "/nonexistent/secret",
    }  # fmt: skip  (never read)
    return write_config(tmp_path / "drainer.toml", redis_server.url, docplanner=[account])


def drainer(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str]:
    code = main(["deadletter", args[0], "--config", str(config), *args[1:]])
    return code, capsys.readouterr().out


def test_list_counts_by_source_account_and_reason(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`list --json` counts per (source, account, reason); filters narrow it."""
    code, out = drainer(capsys, config, "list", "--json")
    assert code == 0
    groups = {
        (g["source"], g["account"], g["reason"]): g["count"] for g in json.loads(out)["groups"]
    }
    assert groups == {
        ("docplanner", "pl", "publish_refused"): 2,
        ("docplanner", "pl", "expand_failed"): 1,
        ("docplanner", "es", "publish_refused"): 1,
        ("myinvois", "acme", "invalid_notification"): 1,
    }
    code, out = drainer(capsys, config, "list", "--reason", "publish_refused", "--entries")
    assert code == 0 and len(out.splitlines()) == 3
    code, out = drainer(capsys, config, "list", "--account", "acme")
    assert "myinvois  acme     invalid_notification  1" in out and "1 dead letters" in out


def test_show_prints_the_raw_bytes_of_one_entry(
    config: Path, redis_client: redis.Redis, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """`show ID` writes the entry's raw bytes, exactly; an unknown id exits 3."""
    [(entry_id, fields)] = redis_client.xrange(DEADLETTER, count=1)
    assert main(["deadletter", "show", "--config", str(config), entry_id]) == 0
    assert capsysbinary.readouterr().out == fields["raw"].encode()
    assert main(["deadletter", "show", "--config", str(config), "1-1"]) == 3


def test_redrive_publishes_through_the_normal_path_removes_what_is_done_and_is_safe_to_repeat(
    config: Path, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """`redrive --account pl`: a dry run writes nothing; then the refused items and the
    expanded body reach the stream with the daemon's event ids and leave the dead-letter
    stream; the still-invalid MyInvois item stays; a repeat publishes nothing twice."""
    code, out = drainer(capsys, config, "redrive", "--account", "pl", "--dry-run")
    assert code == 0 and "dry run: nothing written" in out
    assert redis_client.xlen(DOCPLANNER) == 0 and redis_client.xlen(DEADLETTER) == 5
    code, out = drainer(capsys, config, "redrive", "--account", "pl")
    assert code == 0, out
    ids = [e["event_id"] for e in stream_entries(redis_client, DOCPLANNER)]
    assert ids == [docplanner_event_id("pl", notification(n)) for n in (1, 2, 3, 4)]
    left = stream_entries(redis_client, DEADLETTER)
    assert sorted((e["source"], e["account"]) for e in left) == [
        ("docplanner", "es"),
        ("myinvois", "acme"),
    ]
    seed_again = stream_entries(redis_client, DOCPLANNER)
    code, out = drainer(capsys, config, "redrive", "--source", "myinvois")
    assert code == 0 and "1 still invalid" in out and redis_client.xlen(MYINVOIS) == 0
    assert redis_client.xlen(DEADLETTER) == 2, "a still-invalid entry stays"
    code, out = drainer(capsys, config, "redrive", "--account", "pl")
    assert code == 0 and "\n0 dead letters" in "\n" + out
    assert stream_entries(redis_client, DOCPLANNER) == seed_again


def test_redrive_of_entries_already_on_the_stream_adds_nothing(
    config: Path,
    redis_server: LocalRedis,
    redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same dead letters redriven twice (written again in between): de-duplication
    keeps one entry per notification."""
    refused = [e for e in stream_entries(redis_client, DEADLETTER) if "WRONGTYPE" in e["detail"]]
    assert drainer(capsys, config, "redrive", "--reason", "publish_refused")[0] == 0
    for fields in refused:  # the same dead letters again (new stream ids, same contents)
        redis_client.xadd(DEADLETTER, fields)  # type: ignore[arg-type]
    code, out = drainer(capsys, config, "redrive", "--reason", "publish_refused")
    assert code == 0 and "0 new" in out
    assert out.count("0 new") == 2 and "2 removed" in out
    assert redis_client.xlen(DOCPLANNER) == 3  # pl 1, pl 2, es 5


def test_redrive_without_a_selection_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Redriving the whole dead-letter stream needs a deliberate filter: exit 2, one line."""
    assert main(["deadletter", "redrive", "--config", str(config)]) == 2
    assert "select entries" in capsys.readouterr().err


def test_redis_unreachable_is_exit_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens on the configured Redis port: exit 1, one line on stderr, no traceback."""
    config = write_config(tmp_path / "drainer.toml", f"redis://127.0.0.1:{free_port()}/0")
    assert main(["deadletter", "list", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("drainer deadletter: redis: "), err
