"""Hostile inputs through notification parsing: nothing raises, nothing is dropped silently.

Every pulled body ends up either as one stream entry per item (valid ones on the stream,
invalid ones as dead letters, ``entries + dead letters == items``) or, when the body
does not parse, as exactly one dead letter whose ``raw`` is the body (UTF-8 with
replacement). Pushed bodies end up spooled as an entry (204) or a dead letter (400).
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from daemon.envelope.batch import PullExpander, build_entries
from daemon.envelope.codec import canonical_json, loads
from daemon.envelope.docplanner import (
    PullBatch,
    check_docplanner,
    docplanner_event_id,
    parse_pull_body,
)
from daemon.envelope.entries import Invalid
from daemon.envelope.myinvois import check_myinvois, myinvois_entry
from daemon.envelope.salvage import UNREADABLE_WHOLE
from daemon.metrics import Metrics
from daemon.metrics.docplanner import DocPlannerIntake
from daemon.sources.docplanner.push import PushReceiver
from daemon.sources.myinvois.window import Window, build_batch
from daemon.spool import RawBatch, SpoolBudget, SpoolLog

ACCOUNT = "pl"
STREAM = "drainer:{docplanner}"
DEADLETTER = "drainer:{deadletter}"
RECEIVED = 1_790_000_000.5
TOKEN = "fuzz-push-token"
PLACEHOLDER = "<item nested too deeply to re-encode>"
BOM = b"\xef\xbb\xbf"

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies -----------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),  # json.dumps writes NaN / Infinity tokens
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
times = st.one_of(
    st.just("2026-11-02T10:18:34+01:00"),
    st.just("2026-11-02T10:18:34Z"),
    st.just("2026-11-02T10:18:34"),  # no offset: invalid for DocPlanner
    st.just("not a time"),
    st.text(max_size=70),
    st.integers(),
    st.none(),
)
names = st.one_of(
    st.sampled_from(["slot-booked", "booking-canceled", "some-future-event", ""]),
    st.text(max_size=20),
    st.integers(min_value=200, max_value=5000).map(lambda n: "x" * n),  # too long past 200
    json_values,
)
base_data = st.fixed_dictionaries(
    {"facility": st.just({"id": "1"}), "doctor": st.just({"id": "2"})},
    optional={"address": json_values, "visit_booking": json_values, "extra": json_values},
)


@st.composite
def notifications(draw: st.DrawFn) -> Any:
    """Mostly notification-shaped objects, with every field possibly missing or mistyped."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # anything at all
    item: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        item["name"] = draw(names)
    if draw(st.integers(0, 9)):
        item["data"] = draw(st.one_of(base_data, json_values))
    if draw(st.integers(0, 9)):
        item["created_at"] = draw(times)
    if draw(st.booleans()):
        item[draw(st.text(max_size=10))] = draw(json_values)
    if draw(st.integers(0, 19)) == 0:
        data = item.get("data")
        huge = "y" * draw(st.integers(10_000, 300_000))
        item["data"] = {**(data if isinstance(data, dict) else {}), "note": huge}
    return item


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def pull_bodies(draw: st.DrawFn) -> bytes:
    """Pull response bodies: well-formed, mangled, truncated, BOM-prefixed, binary, deep."""
    kind = draw(st.integers(0, 9))
    items = draw(st.lists(notifications(), max_size=8))
    remaining = draw(st.one_of(st.integers(-5, 10**6), st.text(max_size=5), st.none()))
    document = {"notifications": items, "remaining": remaining}
    body = json.dumps(document, ensure_ascii=draw(st.booleans())).encode()
    if kind == 1:
        body = BOM + body
    elif kind == 2:
        body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
    elif kind == 3:
        body = draw(st.binary(max_size=300))
    elif kind == 4:  # deep nesting inside an item, maybe past the parser's limit
        depth = draw(st.sampled_from([50, 500, 2_000, 100_000]))
        body = b'{"notifications":[{"name":"x","data":' + b"[" * depth + b"]" * depth + b"}]}"
    elif kind == 5:  # duplicate keys: the last one wins
        body = (
            b'{"notifications":[{"name":"a","name":"slot-booked","data":{},"data":{"x":1},'
            b'"created_at":"2026-11-02T10:18:34Z"}],"remaining":1,"remaining":2}'
        )
    elif kind == 6:  # a non-UTF-8 byte inside a string
        position = draw(st.integers(0, len(body)))
        body = (
            body[:position]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\x80\x80"]))
            + body[position:]
        )
    elif kind == 7:
        body = draw(st.sampled_from([b"", b"null", b"[]", b"{}", b'"x"', b"NaN", b"Infinity"]))
    elif kind == 8:  # other top-level shapes
        body = json.dumps(draw(st.one_of(json_values, notifications()))).encode()
    return body


# --- helpers ----------------------------------------------------------------------------------


def expander() -> tuple[PullExpander, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = Metrics(registry, [("docplanner", ACCOUNT)])
    return PullExpander(ACCOUNT, STREAM, DEADLETTER, DocPlannerIntake(metrics, ACCOUNT)), registry


def deadletter_count(registry: CollectorRegistry) -> float:
    """drainer_deadletter_total summed over reasons."""
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "drainer_deadletter_total"
    )


def same_json(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to itself (json round trips keep NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def assert_utf8_strings(fields: dict[str, str]) -> None:
    """Redis takes bytes: every field is a str that encodes as UTF-8."""
    for name, value in fields.items():
        assert isinstance(name, str) and isinstance(value, str)
        value.encode("utf-8")


# --- parse_pull_body and the PullExpander ----------------------------------------------------


@FUZZ
@given(pull_bodies())
@example(b"[" * 200_000)
@example(BOM + b'{"notifications":[],"remaining":0}')
@example(b'{"notifications":[{"name":"slot-booked","data":{},"created_at":NaN}]}')
@example(b'{"notifications":[{"name":"slot-booked","data":{"x":Infinity},'
         b'"created_at":"2026-11-02T10:18:34Z"}]}')  # fmt: skip
@example(b"\xff\xfe{\x00}\x00")
def test_every_pulled_item_becomes_an_entry_or_a_dead_letter(body: bytes) -> None:
    """PullExpander never raises: entries + dead letters == items, or one dead letter per body."""
    parsed = parse_pull_body(body, exact=True)  # the json module's reading is the reference
    expand, registry = expander()
    entries = expand(RawBatch(RECEIVED, "pull", body))
    dead = [e for e in entries if e.stream == DEADLETTER]
    assert {e.stream for e in entries} <= {STREAM, DEADLETTER}, "only the two streams"
    for entry in entries:
        assert_utf8_strings(entry.fields)
    assert deadletter_count(registry) == len(dead)
    whole = [e for e in dead if e.fields["reason"] == "unparseable_body"]
    if isinstance(parsed, Invalid) and not whole:
        # One item JSON cannot read on its own (nested too deeply): read item by item, that
        # item dead-lettered with its bytes, the others published.
        assert any(w in parsed.detail for w in UNREADABLE_WHOLE), parsed.detail
        assert dead and {e.fields["reason"] for e in dead} == {"invalid_notification"}
        assert any("not readable JSON" in e.fields["detail"] for e in dead)
        return
    if isinstance(parsed, Invalid):
        assert parsed.raw == body
        assert len(entries) == 1 and dead == entries
        assert dead[0].fields["reason"] == "unparseable_body"
        assert dead[0].fields["raw"] == body.decode("utf-8", errors="replace")
        return
    assert isinstance(parsed, PullBatch)
    assert parsed.remaining >= 0
    assert len(entries) == len(parsed.items), "every item is accounted for, order kept"
    for item, entry in zip(parsed.items, entries, strict=True):
        if entry.stream == STREAM:
            assert check_docplanner(item) is None
            assert entry.event_id == docplanner_event_id(ACCOUNT, item)
            assert same_json(json.loads(entry.fields["payload"]), item)
            assert entry.fields["delivery"] == "pull" and entry.fields["occurred_at"].endswith("Z")
        else:
            assert entry.fields["reason"] == "invalid_notification"
            raw = entry.fields["raw"]
            if raw != PLACEHOLDER:  # only an item too deep to re-encode loses its bytes
                assert same_json(loads(raw.encode()), item), "the dead letter keeps the item"


@FUZZ
@given(st.lists(notifications(), max_size=10))
def test_build_entries_keeps_one_entry_per_item_and_is_deterministic(items: list[Any]) -> None:
    """build_entries: one entry per item, in order; the same input gives the same event ids."""
    received = datetime.fromtimestamp(RECEIVED, tz=UTC)
    first, reasons, created = build_entries(ACCOUNT, STREAM, DEADLETTER, items, received, "pull")
    again, _, _ = build_entries(ACCOUNT, STREAM, DEADLETTER, items, received, "pull")
    assert len(first) == len(items)
    assert [e.event_id for e in first] == [e.event_id for e in again]
    dead = sum(1 for e in first if e.stream == DEADLETTER)
    assert reasons.get("invalid_notification", 0) == dead
    assert len(created) == len(items) - dead
    assert len({e.event_id for e in first if e.stream == DEADLETTER}) == dead, (
        "two identical bad items of one batch stay two dead letters"
    )


@FUZZ
@given(st.one_of(notifications(), json_values))
def test_check_docplanner_never_raises_and_accepts_only_what_can_be_built(item: Any) -> None:
    """check_docplanner answers for any JSON value; an accepted item builds a UTF-8 entry."""
    problem = check_docplanner(item)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        received = datetime.fromtimestamp(RECEIVED, tz=UTC)
        entries, reasons, _ = build_entries(ACCOUNT, STREAM, DEADLETTER, [item], received, "push")
        assert len(entries) == 1 and not reasons
        assert_utf8_strings(entries[0].fields)


@st.composite
def myinvois_items(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    item: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        item["notificationId"] = draw(
            st.one_of(st.text(min_size=1, max_size=30), st.integers(), st.just("x" * 300))
        )
    if draw(st.integers(0, 9)):
        item["creationDateTime"] = draw(
            st.one_of(
                times, st.just("2026-11-02T10:18:34"), st.just("2026-11-02T10:18:34.1234567Z")
            )
        )
    if draw(st.integers(0, 9)):
        item["typeId"] = draw(
            st.one_of(st.integers(), st.booleans(), st.text(max_size=5), st.none())
        )
    if draw(st.booleans()):
        item["notificationSubject"] = draw(json_values)
    return item


@FUZZ
@given(myinvois_items())
def test_check_myinvois_never_raises_and_accepted_items_build_utf8_entries(item: Any) -> None:
    """check_myinvois answers for any JSON value; an accepted item builds a UTF-8 entry."""
    problem = check_myinvois(item)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        entry = myinvois_entry("drainer:{myinvois}", "acme", item, datetime.now(UTC))
        assert entry.event_id == f"myinvois:acme:{item['notificationId']}"
        assert entry.fields["occurred_at"].endswith("Z")
        assert_utf8_strings(entry.fields)


# --- known bugs: lone surrogates ------------------------------------------------------------

SURROGATE_DOCPLANNER = (
    b'{"name":"slot-booked","data":{"patient":"Jo\\ud800"},"created_at":"2026-11-02T10:18:34Z"}'
)
SURROGATE_MYINVOIS = (
    b'{"notificationId":"N1\\udc80","creationDateTime":"2026-11-02T10:18:34Z","typeId":3}'
)


def test_dead_letter_of_an_item_with_a_lone_surrogate_keeps_its_content() -> None:
    """A pulled item with an unpaired surrogate escape is dead-lettered with its content."""
    body = b'{"notifications":[' + SURROGATE_DOCPLANNER + b'],"remaining":0}'
    expand, _ = expander()
    (entry,) = expand(RawBatch(RECEIVED, "pull", body))
    assert entry.stream == DEADLETTER
    assert "Jo" in entry.fields["raw"] and "patient" in entry.fields["raw"]


def test_myinvois_item_with_a_lone_surrogate_is_dead_lettered_with_its_content() -> None:
    """A MyInvois item with an unpaired surrogate is rejected and dead-lettered, UTF-8 clean."""
    item = json.loads(SURROGATE_MYINVOIS)
    assert check_myinvois(item) is not None, "Redis cannot store the lone surrogate"
    window = Window(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    window.add_page([item], False, datetime.now(UTC))
    batch = build_batch("acme", "drainer:{myinvois}", DEADLETTER, window)
    assert batch.notifications == 0 and batch.deadletters == 1
    [entry] = batch.entries
    assert entry.stream == DEADLETTER
    assert_utf8_strings(entry.fields)
    assert "N1" in entry.fields["raw"] and "creationDateTime" in entry.fields["raw"]


# --- the push receiver --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[PushReceiver]:
    with tempfile.TemporaryDirectory() as directory:
        spool = SpoolLog(Path(directory) / "docplanner-pl", SpoolBudget(1 << 30))
        metrics = Metrics(CollectorRegistry(), [("docplanner", ACCOUNT)])
        accepting = threading.Event()
        accepting.set()
        yield PushReceiver(ACCOUNT, TOKEN, spool, metrics, STREAM, DEADLETTER, accepting)


push_bodies = st.one_of(
    st.builds(lambda n: json.dumps(n).encode(), notifications()),
    st.builds(lambda n: BOM + json.dumps(n).encode(), notifications()),
    st.binary(max_size=200),
    st.sampled_from([b"", b"[" * 50_000, SURROGATE_DOCPLANNER, b'{"name":1,"name":"x"}']),
)


@FUZZ
@given(body=push_bodies, token=st.one_of(st.just(TOKEN), st.none(), st.text(max_size=20)))
def test_every_push_is_answered_and_spooled_as_an_entry_or_a_dead_letter(
    receiver: PushReceiver, body: bytes, token: str | None
) -> None:
    """handle() never raises: 204 spools an entry, 400 a dead letter of the raw bytes, 401 nil."""
    spool = receiver.spool
    before = spool.pending_records
    status, document = receiver.handle(token, body)
    records = spool.pending(10_000)
    if token != TOKEN:
        assert status == 401 and spool.pending_records == before
        return
    assert status in (204, 400), document
    assert spool.pending_records == before + 1
    (entry,) = records[-1].entries
    assert_utf8_strings(entry.fields)
    if status == 204:
        item = loads(body)
        assert entry.stream == STREAM and entry.fields["delivery"] == "push"
        assert same_json(json.loads(entry.fields["payload"]), item)
    else:
        assert entry.stream == DEADLETTER
        assert entry.fields["raw"] == body.decode("utf-8", errors="replace")
        assert entry.fields["reason"] in ("invalid_json", "invalid_notification")
    spool.mark_published(records[-1].seq)


def test_canonical_json_of_nan_is_stable() -> None:
    """NaN and Infinity survive canonical JSON, so their event ids are deterministic."""
    item = {"name": "x", "data": {"v": float("nan"), "w": float("inf")}, "created_at": "t"}
    assert canonical_json(item) == canonical_json(json.loads(canonical_json(item)))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_pull_body_with_a_non_json_number_is_dead_lettered_whole(literal: str) -> None:
    """NaN/Infinity (not RFC 8259 JSON) anywhere in a pull: the raw body is dead-lettered."""
    body = (
        b'{"notifications":[{"name":"slot-booked","data":{"x":%s},'
        b'"created_at":"2026-11-02T10:18:34Z"}],"remaining":0}' % literal.encode()
    )
    expand, _ = expander()
    (dead,) = expand(RawBatch(RECEIVED, "pull", body))
    assert (dead.stream, dead.fields["reason"]) == (DEADLETTER, "unparseable_body")
    assert dead.fields["raw"] == body.decode()
