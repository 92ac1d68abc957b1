"""The consumer kit's published contract: generated from the models, valid, handed out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from daemon.envelope.docplanner import docplanner_entry
from daemon.envelope.entries import Invalid, deadletter_entry
from daemon.envelope.myinvois import myinvois_entry
from drainer_consumer import Event
from drainer_consumer.contract import FILES, asyncapi, entry_schema, generated, published

ROOT = Path(__file__).resolve().parents[2]
# The official AsyncAPI 3.0.0 JSON Schema (source and licence: tests/contract_data/README.md).
ASYNCAPI_SCHEMA = ROOT / "tests" / "contract_data" / "asyncapi-3.0.0.schema.json"


def test_published_files_are_what_the_models_generate() -> None:
    """The shipped JSON Schemas and AsyncAPI document equal a fresh generation (no drift)."""
    for name, text in generated().items():
        assert published(name) == text, f"{name}: python -m drainer_consumer.contract --write"


def test_asyncapi_document_validates_against_the_official_schema() -> None:
    """asyncapi.json is a valid AsyncAPI 3.0.0 document (official JSON Schema, draft-07)."""
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    document = json.loads(published("asyncapi.json"))
    jsonschema.Draft7Validator(schema).validate(document)
    defaults = {
        parameter["default"]
        for channel in document["channels"].values()
        for parameter in channel["parameters"].values()
    }
    assert defaults == {
        "drainer:{docplanner}",
        "drainer:{myinvois}",
        "drainer:{deadletter}",
    }


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


@pytest.mark.parametrize("name", FILES)
def test_every_ref_in_the_contract_files_resolves(name: str) -> None:
    """Each local $ref points at something; an operation's messages are its channel's."""
    document = json.loads(published(name))
    refs = _refs(document)
    for ref in refs:
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
    for operation in document.get("operations", {}).values():
        channel = operation["channel"]["$ref"]
        assert all(m["$ref"].startswith(channel + "/messages/") for m in operation["messages"])


def test_asyncapi_validation_catches_a_broken_document() -> None:
    """The official schema rejects an operation without its channel: the check has teeth."""
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    broken = asyncapi()
    del broken["operations"]["consume_docplanner"]["channel"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_asyncapi_message_schemas_are_the_published_entry_schemas() -> None:
    """The AsyncAPI payload of a stream entry has the JSON Schema's properties and rules."""
    document = asyncapi()
    entry = document["components"]["schemas"]["StreamEntry"]
    published_entry = entry_schema()
    assert entry["properties"].keys() == published_entry["properties"].keys()
    assert entry["required"] == published_entry["required"]


def _entries() -> list[dict[str, str]]:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 8, 1, 2, 3, 456000, tzinfo=UTC)
    notification = {
        "name": "slot-booked",
        "data": {"facility": {"id": "1"}, "doctor": {"id": "2"}, "address": {"id": "3"}},
        "created_at": "2026-11-02T10:18:34+01:00",
    }
    record = {"notificationId": "73DKLJHH78NJUHQ", "creationDateTime": "2026-11-02T10:18:34Z"}
    record["typeId"] = "6"
    return [
        docplanner_entry("s", "pl", notification, now, "push").fields,
        myinvois_entry("s", "acme", record, now).fields,
    ]


@pytest.mark.parametrize("index", [0, 1], ids=["docplanner", "myinvois"])
def test_envelope_entries_validate_and_parse(index: int) -> None:
    """The daemon's own entry builders produce entries the schema and the library accept."""
    fields = _entries()[index]
    jsonschema.Draft202012Validator(entry_schema()).validate(fields)
    event = Event.from_fields("s", "1-0", fields)
    assert event.event_id == fields["event_id"] and event.occurred_at.tzinfo is not None


@pytest.mark.parametrize(
    ("key", "value"),
    [("schema", "2"), ("delivery", "poll"), ("occurred_at", "2026-11-02T10:18:34+01:00")],
)
def test_schema_rejects_an_entry_that_breaks_the_contract(key: str, value: str) -> None:
    """A wrong version, a DocPlanner entry 'polled', a time not in UTC: each refused."""
    fields: dict[str, Any] = {**_entries()[0], key: value}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(entry_schema()).validate(fields)


def test_deadletter_entries_validate() -> None:
    """A dead-letter entry built by the daemon validates against its published schema."""
    from datetime import UTC, datetime

    invalid = Invalid("invalid_json", "push body is not JSON", b'{"name": \xff')
    fields = deadletter_entry("d", "docplanner", "pl", invalid, datetime.now(UTC)).fields
    schema = json.loads(published("deadletter-entry.schema.json"))
    jsonschema.Draft202012Validator(schema).validate(fields)


def test_the_image_build_ships_the_consumer_kit() -> None:
    """The Dockerfile copies drainer_consumer/ (and .dockerignore lets it in): share needs it."""
    assert "COPY drainer_consumer/ drainer_consumer/" in (ROOT / "Dockerfile").read_text()
    assert "!drainer_consumer/" in (ROOT / ".dockerignore").read_text().splitlines()
