"""Event ids are pinned: a faster JSON path must keep every DocPlanner id byte-identical."""

from __future__ import annotations

from datetime import UTC, datetime

from daemon.envelope import PullBatch, canonical_json, docplanner_event_id, parse_pull_body
from daemon.sources.docplanner.expand import build_entries

# Computed with the json-module implementation (before orjson), never to be edited.
BODY = (
    b'{"notifications":['
    b'{"name":"slot-booked","data":{"visit_booking":{"id":"3e4f1a",'
    b'"start_at":"2026-11-02T10:00:00+01:00"},"facility":{"id":17,'
    b'"name":"Cl\xc3\xadnica \xe2\x80\xa8 \\"Sol\\"\\n\\u0001\\u001f\\t"}},'
    b'"created_at":"2026-11-02T10:18:34+01:00"},'
    b'{"created_at":"2026-11-02T10:18:35Z","name":"price","data":{"z":1,"a":[1.5,0.1,-0.0,'
    b"1e16,1.0,0.0001,0.00001,1e-07,123456789012345678901234567890,-0,1E5]}},"
    b'{"name":"emoji","data":{"\xf0\x9f\x98\x80":"\xef\xbf\xbf","\xc3\xa9":{"b":[],"a":{}},'
    b'"a":null,"t":true,"f":false},"created_at":"2026-11-02T10:18:36Z"},'
    b'{"name":"nan","data":{"v":NaN,"w":-Infinity},"created_at":"2026-11-02T10:18:37Z"}'
    b'],"remaining":0}'
)
IDS = [
    "docplanner:acme:975ef614fc17fb19fce44431d42bb9cb",
    "docplanner:acme:162c3bd53ae554b8381ff3be4ae8f6e0",
    "docplanner:acme:5cf653ffeb7726dd45e02cd75d1f0180",
    "docplanner:acme:9faf19833e9643ae7731f3706cc09e32",
]
PRICE_PAYLOAD = (
    '{"created_at":"2026-11-02T10:18:35Z","data":{"a":[1.5,0.1,-0.0,1e+16,1.0,0.0001,1e-05,'
    '1e-07,123456789012345678901234567890,0,100000.0],"z":1},"name":"price"}'
)


def _items() -> list[object]:
    batch = parse_pull_body(BODY)
    assert isinstance(batch, PullBatch)
    return batch.items


def test_event_ids_of_fixed_notifications_are_pinned() -> None:
    """Escapes, Unicode keys, floats, big ints and NaN keep their pre-orjson event ids."""
    assert [docplanner_event_id("acme", item) for item in _items()] == IDS


def test_pulled_entries_carry_the_pinned_ids_and_payload() -> None:
    """The pull expansion path yields the same ids and the same canonical payload bytes."""
    received = datetime(2026, 11, 2, 10, 19, tzinfo=UTC)
    entries, reasons, _ = build_entries("acme", "s", "dl", _items(), received, "pull")
    assert reasons == {}
    assert [entry.event_id for entry in entries] == IDS
    assert entries[1].fields["payload"] == PRICE_PAYLOAD
    assert canonical_json(_items()[1]) == PRICE_PAYLOAD
