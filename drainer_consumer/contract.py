"""The published contract, generated from the models: JSON Schemas and an AsyncAPI 3.0 document.

The files in ``drainer_consumer/schemas/`` are this module's output; a test compares them
with a fresh generation, so they cannot drift from the code. After changing a model::

    python -m drainer_consumer.contract --write
"""

from __future__ import annotations

import argparse
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from drainer_consumer.models import (
    DeadLetterFields,
    DocPlannerNotification,
    EntryFields,
    MyInvoisNotification,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ENTRY_FILE = "stream-entry.schema.json"
DEADLETTER_FILE = "deadletter-entry.schema.json"
ASYNCAPI_FILE = "asyncapi.json"
FILES = (ENTRY_FILE, DEADLETTER_FILE, ASYNCAPI_FILE)
STREAMS = {
    "docplanner": ("drainer:{docplanner}", "StreamEntry", "DocPlanner notifications"),
    "myinvois": ("drainer:{myinvois}", "StreamEntry", "MyInvois notifications"),
    "deadletter": ("drainer:{deadletter}", "DeadLetterEntry", "input that was not valid"),
}
GROUP_USAGE = (
    "Read with a consumer group: XGROUP CREATE <stream> <group> 0 MKSTREAM once, then "
    "XREADGROUP GROUP <group> <consumer> COUNT n BLOCK ms STREAMS <stream> >, and XACK each "
    "entry after its work is done. Entries a dead consumer left pending are taken over with "
    "XAUTOCLAIM after an idle time longer than any handler takes; XPENDING's delivery count "
    "tells an entry that keeps failing, to move aside. Delivery is at least once: make the "
    "work idempotent on event_id. The drainer_consumer package does all of this."
)


def _schema(model: type[BaseModel], ref: str) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, ref_template=ref + "{model}")


def _payload_defs(ref: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for model in (DocPlannerNotification, MyInvoisNotification):
        schema = _schema(model, ref)
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
    return defs


def _with_payload(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    schema["properties"]["payload"]["contentSchema"] = {
        "oneOf": [{"$ref": ref + "DocPlannerNotification"}, {"$ref": ref + "MyInvoisNotification"}]
    }
    return schema


def entry_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of a stream entry, schema "1"; the payload as contentSchema."""
    ref = "#/$defs/"
    schema = _with_payload(_schema(EntryFields, ref), ref)
    schema["$defs"] = _payload_defs(ref)
    return {"$schema": DRAFT, "$id": "urn:notification-drainer:stream-entry:1", **schema}


def deadletter_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of a dead-letter entry."""
    schema = _schema(DeadLetterFields, "#/$defs/")
    return {"$schema": DRAFT, "$id": "urn:notification-drainer:deadletter-entry:1", **schema}


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the three streams (the daemon sends, consumers receive)."""
    ref = "#/components/schemas/"
    schemas = {
        "StreamEntry": _with_payload(_schema(EntryFields, ref), ref),
        "DeadLetterEntry": _schema(DeadLetterFields, ref),
        **_payload_defs(ref),
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for key, (address, message, what) in STREAMS.items():
        # The key is a parameter: configurable, and its braces are a Redis Cluster hash tag,
        # which an AsyncAPI address would read as a parameter expression.
        channels[key] = {
            "address": f"{{{key}_stream}}",
            "parameters": {
                f"{key}_stream": {
                    "default": address,
                    "examples": [address],
                    "description": f"The stream key: [streams] {key} in the daemon's config "
                    "(braces included: a Redis Cluster hash tag).",
                }
            },
            "title": f"{what} ({address})",
            "description": f"Redis stream of {what}; every field value is a string.",
            "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        }
        this = {"$ref": f"#/channels/{key}"}
        one = [{"$ref": f"#/channels/{key}/messages/{message}"}]
        operations[f"publish_{key}"] = {
            "action": "send",
            "channel": this,
            "summary": f"The daemon appends {what} (XADD, de-duplicated, durable).",
            "messages": one,
        }
        operations[f"consume_{key}"] = {
            "action": "receive",
            "channel": this,
            "summary": f"A downstream consumer group reads {what}.",
            "description": GROUP_USAGE,
            "messages": one,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "notification-drainer streams",
            "version": "1.0.0",
            "description": "DocPlanner and MyInvois notifications, normalised and de-duplicated "
            "on Redis streams (entry schema 1). " + GROUP_USAGE,
        },
        "defaultContentType": "application/json",
        "servers": {
            "redis": {
                "host": "localhost:6379",
                "protocol": "redis",
                "description": "The Redis the daemon publishes to ([redis] url).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": {
                "StreamEntry": {
                    "name": "StreamEntry",
                    "title": "One notification",
                    "summary": "The fields of one stream entry (a map of strings).",
                    "payload": {"$ref": ref + "StreamEntry"},
                },
                "DeadLetterEntry": {
                    "name": "DeadLetterEntry",
                    "title": "One dead letter",
                    "summary": "Bad input set aside with its raw bytes and a reason.",
                    "payload": {"$ref": ref + "DeadLetterEntry"},
                },
            },
        },
    }


def generated() -> dict[str, str]:
    """File name -> the text it must hold."""
    documents = {
        ENTRY_FILE: entry_schema(),
        DEADLETTER_FILE: deadletter_schema(),
        ASYNCAPI_FILE: asyncapi(),
    }
    return {
        name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        for name, doc in documents.items()
    }


def published(name: str) -> str:
    """The shipped text of one contract file (package data)."""
    return files("drainer_consumer").joinpath("schemas", name).read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or check drainer_consumer/schemas/.")
    parser.add_argument("--write", action="store_true", help="rewrite the files")
    args = parser.parse_args(argv)
    folder = Path(__file__).resolve().parent / "schemas"
    stale = [name for name, text in generated().items() if published(name) != text]
    if args.write:
        for name, text in generated().items():
            (folder / name).write_text(text, encoding="utf-8")
        return 0
    for name in stale:
        print(f"{folder / name} is stale: python -m drainer_consumer.contract --write")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
