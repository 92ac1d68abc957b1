"""One item JSON cannot read on its own (nested too deeply, a huge integer) in a page or a
pull batch: that item is dead-lettered with its bytes, the rest is read and published."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from daemon.envelope.batch import PullExpander
from daemon.envelope.salvage import salvage
from daemon.errors import TransientError
from daemon.metrics import Metrics
from daemon.metrics.docplanner import DocPlannerIntake
from daemon.sources.myinvois.api import parse_page
from daemon.sources.myinvois.window import Window, build_batch
from daemon.spool import RawBatch

DEEP = b'{"notificationId":"D","typeId":3,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HUGE = b'{"notificationId":"H","typeId":' + b"7" * 5000 + b"}"


def good(n: int) -> bytes:
    return (
        b'{"notificationId":"N%d","creationDateTime":"2026-11-02T10:00:00Z",'
        b'"receivedDateTime":"2026-11-02T10:00:00Z","typeId":"3"}' % n
    )


def test_a_page_with_a_nesting_bomb_and_a_huge_integer_publishes_the_rest() -> None:
    """The page is read item by item: two valid items published, the two poison items
    dead-lettered with their exact bytes; the page is not asked for again for ever."""
    body = b'{"result":[%s,%s,%s,%s],"metadata":{"hasNext":false}}' % (good(1), DEEP, HUGE, good(2))
    items, has_next = parse_page(body, 100)
    assert len(items) == 4 and has_next is False
    window = Window(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    window.add_page(items, has_next, datetime(2026, 11, 3, tzinfo=UTC))
    batch = build_batch("acme", "s", "dl", window)
    published = [e.event_id for e in batch.entries if e.stream == "s"]
    assert published == ["myinvois:acme:N1", "myinvois:acme:N2"]
    dead = [e.fields for e in batch.entries if e.stream == "dl"]
    assert [d["raw"].encode() for d in dead] == [DEEP, HUGE]
    assert all("not readable JSON" in d["detail"] for d in dead)


def test_a_truncated_page_is_still_asked_for_again() -> None:
    """Truncation is about the body, not one item: no item-by-item reading, TransientError."""
    body = b'{"result":[%s,%s' % (good(1), DEEP[:5000])
    assert salvage(body, "result") is None
    with pytest.raises(TransientError):
        parse_page(body, 100)


def test_a_pull_batch_with_a_nesting_bomb_publishes_its_other_items() -> None:
    """A DocPlanner batch with one item nested 100,000 deep: the others are published, that
    item is dead-lettered with its bytes (not the whole batch)."""
    item = b'{"name":"slot-booked","data":{"n":%d},"created_at":"2026-11-02T10:18:34Z"}'
    deep = b'{"name":"slot-booked","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    body = b'{"notifications":[%s,%s,%s],"remaining":4}' % (item % 1, deep, item % 2)
    metrics = Metrics(CollectorRegistry(), [("docplanner", "pl")])
    expand = PullExpander("pl", "s", "dl", DocPlannerIntake(metrics, "pl"))
    entries = expand(RawBatch(1_790_000_000.0, "pull", body))
    assert [e.stream for e in entries] == ["s", "dl", "s"]
    assert entries[1].fields["reason"] == "invalid_notification"
    assert entries[1].fields["raw"].encode() == deep


def test_the_scanner_splits_items_whose_strings_hold_brackets_quotes_and_commas() -> None:
    """Brackets, commas and escaped quotes inside strings do not split an item; a "result"
    that is a value, not the key, is not taken for the array."""
    tricky = b'{"notificationId":"a]\\",[{","x":{"k":["result",1]}}'
    body = b'{"note":"result","result":[%s,%s],"metadata":{"hasNext":true}}' % (tricky, good(1))
    document = salvage(body, "result")
    assert document is not None
    assert document["note"] == "result" and document["metadata"] == {"hasNext": True}
    assert [item["notificationId"] for item in document["result"]] == ['a]",[{', "N1"]
    assert salvage(b'{"result":[]}', "result") == {"result": []}
    assert salvage(b'["result",[1]]', "result") is None
