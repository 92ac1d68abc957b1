"""Event ids are pinned: a faster JSON path must keep every DocPlanner id byte-identical."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from daemon.envelope.batch import PullExpander
from daemon.envelope.codec import InexactJsonError, canonical_json
from daemon.envelope.docplanner import PullBatch, docplanner_event_id, parse_pull_body
from daemon.envelope.entries import Invalid, StreamEntry
from daemon.metrics import Metrics
from daemon.metrics.docplanner import DocPlannerIntake
from daemon.spool import RawBatch

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
    b'"a":null,"t":true,"f":false},"created_at":"2026-11-02T10:18:36Z"}'
    b'],"remaining":0}'
)
IDS = [
    "docplanner:acme:975ef614fc17fb19fce44431d42bb9cb",
    "docplanner:acme:162c3bd53ae554b8381ff3be4ae8f6e0",
    "docplanner:acme:5cf653ffeb7726dd45e02cd75d1f0180",
]
# (A fourth pinned item held NaN/-Infinity: pull bodies are now strict RFC 8259 JSON, so
# such a body is dead-lettered whole and never gets an event id.)
PRICE_PAYLOAD = (
    '{"created_at":"2026-11-02T10:18:35Z","data":{"a":[1.5,0.1,-0.0,1e+16,1.0,0.0001,1e-05,'
    '1e-07,123456789012345678901234567890,0,100000.0],"z":1},"name":"price"}'
)


def _items() -> list[object]:
    """The items as the json module reads them (exact: wide integers stay integers)."""
    batch = parse_pull_body(BODY, exact=True)
    assert isinstance(batch, PullBatch)
    return batch.items


def test_event_ids_of_fixed_notifications_are_pinned() -> None:
    """Escapes, Unicode keys, floats and big ints keep their pre-orjson event ids."""
    assert [docplanner_event_id("acme", item) for item in _items()] == IDS


def _expanded(body: bytes) -> list[StreamEntry]:
    """The entries ``drainer run`` builds from one pulled body."""
    metrics = Metrics(CollectorRegistry(), [("docplanner", "acme")])
    expand = PullExpander("acme", "s", "dl", DocPlannerIntake(metrics, "acme"))
    return expand(RawBatch(1_793_614_740.0, "pull", body))


def test_pulled_entries_carry_the_pinned_ids_and_payload() -> None:
    """The pull expansion path yields the same ids and the same canonical payload bytes."""
    entries = _expanded(BODY)
    assert [entry.event_id for entry in entries] == IDS
    assert entries[1].fields["payload"] == PRICE_PAYLOAD
    assert canonical_json(_items()[1]) == PRICE_PAYLOAD


@pytest.mark.parametrize("index", range(3))
def test_each_notification_alone_keeps_its_id(index: int) -> None:
    """Alone in a body (so orjson reads the strict ones), each item keeps its pinned id."""
    parts = _split_items(BODY.split(b'{"notifications":[', 1)[1].rsplit(b"]", 1)[0])
    body = b'{"notifications":[' + parts[index] + b'],"remaining":0}'
    batch = parse_pull_body(body)
    assert isinstance(batch, PullBatch)
    assert batch.finite, "orjson reads every strict item"
    if index in (0, 2):  # plain items take the fast path, with the json module's text
        assert canonical_json(batch.items[0], finite=True) == canonical_json(batch.items[0])
    assert [entry.event_id for entry in _expanded(body)] == [IDS[index]]


def test_wide_integers_and_nan_keep_the_json_module_meaning() -> None:
    """A >64-bit integer stays an int; NaN is not JSON: the body is unparseable."""
    body = b'{"notifications":[{"name":"n","created_at":"2026-11-02T10:18:35Z","data":'
    body += b'{"n":-9223372036854775809,"m":18446744073709551616}}]}'
    (entry,) = _expanded(body)
    assert entry.fields["payload"].endswith(
        '"data":{"m":18446744073709551616,"n":-9223372036854775809},"name":"n"}'
    )
    rejected = parse_pull_body(b'{"notifications":[NaN]}')
    assert isinstance(rejected, Invalid) and rejected.reason == "unparseable_body"
    for value in ({"b": 1e-05, "a": None}, [1e16], 1e-05, 2.5e-300):
        with pytest.raises(InexactJsonError):
            canonical_json(value, finite=True)


def test_floats_read_by_orjson_keep_the_json_module_text() -> None:
    """Exponents, tiny and huge floats read by orjson are written exactly as json writes them."""
    body = (
        b'{"notifications":[{"name":"f","created_at":"2026-11-02T10:18:35Z","data":{"a":'
        b"[0.00001,1e-07,1E5,1e16,1.5e300,5e-324,0.0001,123.456,-0.0,9007199254740993]}}]}"
    )
    reference = json.loads(body)["notifications"][0]
    expected = json.dumps(reference, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    (entry,) = _expanded(body)
    assert entry.fields["payload"] == expected
    assert entry.event_id == docplanner_event_id("acme", reference)


def test_deep_nesting_is_decided_by_the_json_module() -> None:
    """An item deeper than orjson writes still gets its json-module entry, not an error."""
    deep = b'{"name":"d","created_at":"2026-11-02T10:18:35Z","data":{"x":' + b"[" * 300
    deep += b"]" * 300 + b"}}"
    (entry,) = _expanded(b'{"notifications":[' + deep + b"]}")
    assert entry.event_id == docplanner_event_id("acme", json.loads(deep))


def _split_items(text: bytes) -> list[bytes]:
    """Top-level objects of a JSON array body (braces inside strings are balanced here)."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == ord("{"):
            depth += 1
        elif char == ord("}"):
            depth -= 1
            if depth == 0:
                parts.append(text[start : index + 1])
                start = index + 2
    return parts


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES)
def test_orjson_path_gives_the_json_text_or_steps_aside(value: object) -> None:
    """Any strict JSON read by orjson is written as json writes it, or InexactJsonError."""
    body = json.dumps({"data": value}).encode()
    reference = json.dumps(
        json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    try:
        fast = canonical_json(orjson.loads(body), finite=True)
    except InexactJsonError:
        return
    assert fast == reference


ITEM_DATA = st.dictionaries(st.sampled_from("abcdef"), JSON_VALUES, max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.lists(ITEM_DATA, min_size=1, max_size=6))
def test_a_whole_batch_gets_the_json_module_text_and_ids(datas: list[dict[str, object]]) -> None:
    """The number check runs once per batch: whichever item holds a number orjson would
    write differently, every entry of the batch has json's text and id."""
    items = [
        {"name": f"n{i}", "created_at": "2026-11-02T10:18:35Z", "data": data}
        for i, data in enumerate(datas)
    ]
    body = json.dumps({"notifications": items, "remaining": 0}).encode()
    references = json.loads(body)["notifications"]
    entries = _expanded(body)
    assert [e.event_id for e in entries] == [docplanner_event_id("acme", r) for r in references]
    assert [e.fields["payload"] for e in entries] == [
        json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for r in references
    ]


def test_a_tiny_float_in_the_last_item_sends_the_whole_batch_to_json() -> None:
    """One inexact number anywhere (here the last of three items) re-reads the body exactly."""
    items = [{"name": "n", "created_at": "2026-11-02T10:18:35Z", "data": {"v": v}}
             for v in (1, 2.5, 1e-05)]  # fmt: skip
    body = json.dumps({"notifications": items}).encode()
    payloads = [e.fields["payload"] for e in _expanded(body)]
    assert payloads[-1].endswith('"data":{"v":1e-05},"name":"n"}')
    assert payloads[1].endswith('"data":{"v":2.5},"name":"n"}')
