"""``drainer demo`` end to end, its verdict arithmetic, and the example consumer."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

import pytest
import redis

from daemon.commands.demo.check import compare, verdict
from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.myinvois import myinvois_entry
from tests.helpers import ROOT

ACCOUNT_LINE = re.compile(
    r"^  (?P<label>\S+): generated (?P<generated>\d+), handed out (?P<handed>\d+), "
    r"on stream (?P<stream>\d+), duplicates (?P<dup>\d+), missing (?P<missing>\d+)$",
    re.MULTILINE,
)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline and int(proc.name) != os.getpid():
                found.append(int(proc.name))
    return found


@pytest.mark.timeout(240)
def test_demo_publishes_every_notification_once_and_leaves_nothing_running() -> None:
    """`drainer demo --seconds 15` (no TTY) exits 0, proves exactly-once, stops every child.

    The consumer kit runs as group ``demo`` on the three streams; the view shows its lag.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAINER_")}
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "demo", "--seconds", "15"],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=ROOT,
        env=env,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "RESULT: every generated notification was published exactly once" in out
    lines = {m["label"]: m for m in ACCOUNT_LINE.finditer(out)}
    expected = {"docplanner/pl"}
    expected |= {"docplanner/es"} if find_spec("daemon.sources.docplanner.push") else set()
    agent = {"myinvois/globex", "myinvois/initech", "myinvois/umbrella"}  # one intermediary
    expected |= {"myinvois/acme", *agent} if find_spec("daemon.sources.myinvois.poll") else set()
    assert set(lines) == expected, out[-3000:]
    for line in lines.values():
        assert line["dup"] == "0" and line["missing"] == "0"
        assert int(line["generated"]) == int(line["handed"]) == int(line["stream"]) > 0
    assert int(lines["docplanner/pl"]["generated"]) > 2000  # the seed plus arrivals
    tmp = re.search(r"^drainer demo in (\S+)$", out, re.MULTILINE)
    daemon_pid = re.search(r"^daemon pid (\d+)", out, re.MULTILINE)
    redis_pid = re.search(r"redis-server pid (\d+)", out)
    consumer_pid = re.search(r"^consumer pid (\d+)", out, re.MULTILINE)
    assert tmp and daemon_pid and redis_pid and consumer_pid, out[:2000]
    assert re.search(r"\| group demo lag \d+ pending \d+", out), out[-3000:]
    for stream in ("docplanner", "myinvois", "deadletter"):  # the consumer kit reads all three
        assert re.search(rf"group demo lag \d+ pending \d+ \(drainer:\{{{stream}\}}\)", out)
    assert not _alive(int(daemon_pid[1])) and not _alive(int(redis_pid[1]))
    assert not _alive(int(consumer_pid[1]))
    assert _processes_mentioning(tmp[1]) == []
    assert not Path(tmp[1]).exists()


def test_verdict_counts_duplicates_missing_and_unexpected_entries() -> None:
    """A repeated, an absent and a foreign event_id each fail the verdict, with their counts."""
    good = compare("docplanner/pl", 3, ["a", "b", "c"], ["a", "b", "c"])
    bad = compare("myinvois/acme", 3, ["a", "b", "c"], ["a", "a", "b", "x"])
    assert (good.duplicates, good.missing, good.unexpected) == (0, 0, 0)
    assert (bad.duplicates, bad.missing, bad.unexpected) == (1, 1, 1)
    assert verdict([good], 0) == (
        True,
        "RESULT: every generated notification was published exactly once",
    )
    passed, line = verdict([good, bad], 0)
    assert not passed and "myinvois/acme missing 1, duplicates 1, unexpected 1" in line
    assert verdict([good, bad], 0, settled=False)[1].startswith("RESULT: INCOMPLETE")
    assert not verdict([good], None)[0]  # the daemon had to be killed


def _consume(url: str, count: int, db: Path) -> list[str]:
    argv = [sys.executable, str(ROOT / "examples" / "consumer.py"), "--redis", url]
    argv += ["--stream", "demo:{s}", "--group", "g", "--consumer", "c", "--count", str(count)]
    argv += ["--db", str(db)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.splitlines()


def test_example_consumer_acks_entries_and_does_the_work_once_per_event_id(
    redis_server: LocalRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The example (on the consumer kit) handles and acks; a redelivery does no work twice."""
    ids, events = [], []
    for n in range(3):
        record = {"notificationId": f"N{n}", "creationDateTime": "2026-11-02T10:18:34Z"}
        entry = myinvois_entry("demo:{s}", "acme", {**record, "typeId": "6"}, datetime.now(UTC))
        ids.append(redis_client.xadd("demo:{s}", entry.fields))  # type: ignore[arg-type]
        events.append(entry.event_id)
    db = tmp_path / "billing.db"
    first = _consume(redis_server.url, 2, db)
    second = _consume(redis_server.url, 1, db)  # the group exists now; acked entries stay read
    assert first == [f"{ids[n]} myinvois acme 6 {events[n]} new" for n in (0, 1)]
    assert second == [f"{ids[2]} myinvois acme 6 {events[2]} new"]
    assert redis_client.xpending("demo:{s}", "g")["pending"] == 0
    redis_client.xgroup_setid("demo:{s}", "g", "0")  # every entry delivered again
    again = _consume(redis_server.url, 3, db)
    assert [line.rsplit(" ", 2)[1:] for line in again] == [["already", "done"]] * 3
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM bookings").fetchone() == (3,)
