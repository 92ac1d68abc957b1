"""A MyInvois page with a non-JSON number: read, its bad items dead-lettered, never re-asked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from daemon.errors import TransientError
from daemon.sources.myinvois.api import parse_page
from daemon.sources.myinvois.window import Window, build_batch

GOOD = (
    b'{"notificationId":"N1","creationDateTime":"2026-11-02T10:00:00Z",'
    b'"receivedDateTime":"2026-11-02T10:00:00Z","typeId":3}'
)


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_a_page_with_a_non_json_number_publishes_the_rest(value: bytes) -> None:
    """The page parses; the good item is published, the bad one dead-lettered whole."""
    bad = GOOD.replace(b'"N1"', b'"N2"').replace(b'"typeId":3', b'"typeId":3,"x":' + value)
    body = b'{"result":[' + GOOD + b"," + bad + b'],"metadata":{"hasNext":false}}'
    items, has_next = parse_page(body, 100)
    assert len(items) == 2 and has_next is False
    window = Window(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    window.add_page(items, has_next, datetime(2026, 11, 3, tzinfo=UTC))
    batch = build_batch("acme", "s", "dl", window)
    assert [e.event_id for e in batch.entries if e.stream == "s"] == ["myinvois:acme:N1"]
    [dead] = [e for e in batch.entries if e.stream == "dl"]
    assert "NaN or Infinity" in dead.fields["detail"] and "N2" in dead.fields["raw"]


def test_a_truncated_page_is_asked_for_again() -> None:
    """A body that no reader can parse is transient: the same page is requested again."""
    with pytest.raises(TransientError):
        parse_page(b'{"result":[' + GOOD[:30], 100)
