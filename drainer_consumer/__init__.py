"""drainer_consumer: read the notification-drainer streams safely (the consumer kit).

Shipped in the notification-drainer distribution, but independent of the daemon: it needs
only ``redis`` and ``pydantic``. ::

    from drainer_consumer import Consumer, Event

    def handle(event: Event) -> None:
        ...  # idempotent on event.event_id

    Consumer("redis://10.0.0.5:6379/0", "drainer:{docplanner}", "billing", "billing-1",
             handle).run()

The published contract (JSON Schemas, AsyncAPI) is in ``drainer_consumer/schemas`` and
``drainer share --list``.
"""

from drainer_consumer.consumer import FAILED_STREAM, Consumer, Stats
from drainer_consumer.models import (
    SCHEMA_VERSION,
    DeadLetter,
    DeadLetterFields,
    DocPlannerNotification,
    EntryFields,
    Event,
    MyInvoisNotification,
    parse_entry,
)

__all__ = [
    "FAILED_STREAM",
    "SCHEMA_VERSION",
    "Consumer",
    "DeadLetter",
    "DeadLetterFields",
    "DocPlannerNotification",
    "EntryFields",
    "Event",
    "MyInvoisNotification",
    "Stats",
    "parse_entry",
]
