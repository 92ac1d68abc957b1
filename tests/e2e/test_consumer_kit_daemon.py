"""What the real CLI publishes validates against the consumer kit's published schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import redis
import requests

from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, MyInvoisClient, MyInvoisSandbox
from drainer_consumer import DeadLetter, Event, parse_entry
from drainer_consumer.contract import published
from tests.helpers import Daemon, dp_account, stream_entries, wait_for, write_config

TOKEN = "es-push-token-value"

DP, MI, DL = "drainer:{docplanner}", "drainer:{myinvois}", "drainer:{deadletter}"


def _schema(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(published(name)))


def test_entries_the_daemon_publishes_validate_against_the_published_schemas(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """Pull, push and poll entries and dead letters of a real daemon: schema-valid, parseable."""
    port = free_port()
    push_url = f"http://127.0.0.1:{port}/push/docplanner/es"
    clients = [
        DocPlannerClient("pl-id", "pl-secret-value"),
        DocPlannerClient("es-id", "es-secret-value", push_url=push_url, push_token=TOKEN),
    ]
    mi_client = MyInvoisClient(client_id="acme-id", client_secret="acme-id-secret-value")
    with (
        DocPlannerSandbox(clients=clients) as dp,
        MyInvoisSandbox(clients=[mi_client], requests_per_minute=6000) as mi,
    ):
        now = datetime.now(UTC)
        mi.add_notifications("acme-id", 20, start=now - timedelta(hours=1), end=now)
        acme = {
            "name": "acme",
            "base_url": mi.base_url,
            "identity_url": mi.identity_url,
            "client_id": "acme-id",
            "client_secret": "acme-id-secret-value",
            "interval": "200ms",
            "requests_per_minute": 6000,
            "start_at": (now - timedelta(hours=2)).isoformat(timespec="seconds"),
        }
        push = dp_account("es", dp, mode="push", push_token=TOKEN)
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[dp_account("pl", dp), push],
            myinvois=[acme],
            listen_port=port,
        )
        dp.enqueue("pl-id", 30)
        dp.enqueue_raw("pl-id", [{"data": {}, "created_at": "2026-11-02T10:18:34+01:00"}])
        with Daemon(config) as daemon:
            assert set(dp.push("es-id", dp.enqueue("es-id", 10), drain=False)) == {204}
            bad = requests.post(
                push_url,
                data=b'{"name": "slot-booked", "da',
                headers={"Content-Type": "application/json", "X-Drainer-Token": TOKEN},
                timeout=10,
            )
            assert bad.status_code == 400
            wait_for(lambda: redis_client.xlen(DP) == 40, 60, "30 pulled + 10 pushed entries")
            wait_for(lambda: redis_client.xlen(MI) == 20, 60, "20 MyInvois entries")
            wait_for(lambda: redis_client.xlen(DL) == 2, 60, "two dead letters")
            assert daemon.stop() == 0
    entries, dead = _schema("stream-entry.schema.json"), _schema("deadletter-entry.schema.json")
    defs = entries.schema["$defs"]
    payloads = {  # the payload's contentSchema (validators leave content to the caller)
        source: jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": defs})
        for source, name in (("docplanner", "DocPlannerNotification"),
                             ("myinvois", "MyInvoisNotification"))
    }  # fmt: skip
    deliveries = set()
    for stream in (DP, MI):
        for fields in stream_entries(redis_client, stream):
            entries.validate(fields)
            payloads[fields["source"]].validate(json.loads(fields["payload"]))
            event = parse_entry(stream, "1-0", fields)
            assert isinstance(event, Event)
            deliveries.add(event.delivery)
    assert deliveries == {"pull", "push", "poll"}
    reasons = set()
    for fields in stream_entries(redis_client, DL):
        dead.validate(fields)
        letter = parse_entry(DL, "1-0", fields)
        assert isinstance(letter, DeadLetter)
        reasons.add(letter.reason)
    assert reasons == {"invalid_notification", "invalid_json"}
