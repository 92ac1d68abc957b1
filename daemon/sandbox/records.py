"""Realistic MyInvois notification records (the ``Notification`` model of Get Notifications).

Every field of the published model is present (https://sdk.myinvois.hasil.gov.my/api/
06-get-notifications/, seed: /work/shared/upstream/myinvois-get-notifications.txt);
``typeId`` and ``status`` are strings, times are UTC with ``Z``. Ids are 15 upper-case
letters and digits, unique per factory. ``creationDateTime`` is when the notification
was created, ``receivedDateTime`` when it was sent out, which may be hours later.
"""

from __future__ import annotations

import random
import string
import threading
from typing import Any

from daemon.sandbox.clock import iso_utc

# Get Notifications, "Notification Types" table.
TYPES = {
    "3": "Profile data validation",
    "6": "Document received",
    "7": "Document validated",
    "8": "Document cancelled",
    "10": "User profile changed",
    "11": "Taxpayer profile changed",
    "15": "Document rejection initiated",
    "26": "ERP data validation",
    "33": "Documents processing summary",
    "34": "Document Template Published",
    "35": "Document Template Deletion",
}
_TYPE_WEIGHTS = {
    "3": 2,
    "6": 30,
    "7": 30,
    "8": 5,
    "10": 2,
    "11": 2,
    "15": 4,
    "26": 5,
    "33": 15,
    "34": 3,
    "35": 2,
}
# Get Notifications, "Notification Status" table; the field's example spells "delivered".
STATUSES = {"1": "new", "2": "pending", "3": "batched", "4": "delivered", "5": "error"}
"""Status id -> the value of the ``status`` field (the docs' example spells ``delivered``)."""
_STATUS_WEIGHTS = {"1": 3, "2": 3, "3": 4, "4": 85, "5": 5}
_SUBJECTS = {
    "6": "Documents Received",
    "7": "Documents Validated",
    "8": "Document Cancelled",
    "15": "Document Rejection Requested",
    "33": "Documents Processing Summary",
}
_ID_ALPHABET = string.ascii_uppercase + string.digits


class RecordFactory:
    """Makes MyInvois notifications for one receiver; thread-safe."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._ids: set[str] = set()

    def _unique_id(self) -> str:
        while True:
            candidate = "".join(self._rng.choices(_ID_ALPHABET, k=15))
            if candidate not in self._ids:
                self._ids.add(candidate)
                return candidate

    def make(
        self, created_at: float, receiver: str, tin: str, sent_at: float | None = None
    ) -> dict[str, Any]:
        """One notification created at ``created_at``, sent at ``sent_at`` (whole seconds).

        ``sent_at`` defaults to a few seconds after creation.
        """
        with self._lock:
            rng = self._rng
            notification_id = self._unique_id()
            type_id = rng.choices(list(_TYPE_WEIGHTS), weights=list(_TYPE_WEIGHTS.values()))[0]
            status_id = rng.choices(list(_STATUS_WEIGHTS), weights=list(_STATUS_WEIGHTS.values()))[
                0
            ]
            # receivedDateTime: "The date and time when notification was sent out".
            received = created_at + rng.randrange(0, 5) if sent_at is None else sent_at
            document = "".join(rng.choices(_ID_ALPHABET, k=26))
            language = "en" if rng.random() < 0.8 else "ms"
            attempts: list[dict[str, Any]] = []
            delivered: str | None = None
            if status_id == "4":
                delivered = iso_utc(received + rng.randrange(1, 90))
                attempts.append(
                    {"attemptDateTime": delivered, "status": "delivered", "statusDetails": None}
                )
            elif status_id == "5":
                attempts.append(
                    {
                        "attemptDateTime": iso_utc(received + rng.randrange(1, 90)),
                        "status": "error",
                        "statusDetails": "Cannot connect to system URL supplied",
                    }
                )
            return {
                "notificationId": notification_id,
                "receiverName": receiver,
                "notificationDeliveryId": self._unique_id(),
                "creationDateTime": iso_utc(created_at),
                "receivedDateTime": iso_utc(received),
                "notificationSubject": _SUBJECTS.get(type_id, TYPES[type_id]),
                "deliveredDateTime": delivered,
                "typeId": type_id,
                "typeName": TYPES[type_id],
                "finalMessage": f"Taxpayer {tin}: {TYPES[type_id].lower()} ({document})",
                "address": f"einvoice+{tin.lower()}@example.com.my",
                "language": language,
                "status": STATUSES[status_id],
                "deliveryAttempts": attempts,
            }


def record_id(record: Any) -> object:
    """A record's notificationId; an injected poison item may have none."""
    return record.get("notificationId", "") if isinstance(record, dict) else ""
