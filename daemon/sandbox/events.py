"""Realistic DocPlanner notifications, shaped like the OpenAPI examples (SPEC §1).

Every generated notification is unique: each one carries a fresh booking, break,
address-service or request-signature id, so content-hash de-duplication can never
collapse two different generated events. Ids are strings, as the API has sent them
since 1.0.1. Times carry the Central European offset (``+01:00`` / ``+02:00``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from daemon.sandbox.clock import iso_local

Json = dict[str, Any]

KNOWN_NAMES = (
    "slot-booked",
    "booking-canceled",
    "booking-confirmed",
    "booking-moved",
    "booking-payment-status-changed",
    "break-created",
    "break-moved",
    "break-removed",
    "presence-marked",
    "address-service-created",
    "slot-booking",
)
UNKNOWN_NAME = "patient-checked-in"
"""A name no published version knows: consumers must pass it through."""

_WEIGHTS = {
    "slot-booked": 30,
    "booking-canceled": 12,
    "booking-confirmed": 10,
    "booking-moved": 8,
    "booking-payment-status-changed": 5,
    "break-created": 6,
    "break-moved": 4,
    "break-removed": 4,
    "presence-marked": 10,
    "address-service-created": 4,
    "slot-booking": 5,
    UNKNOWN_NAME: 2,
}
_FIRST = ("Anna", "Piotr", "Katarzyna", "Tomasz", "Agnieszka", "Michał", "Zofia", "Łukasz")
_LAST = ("Nowak", "Kowalski", "Wiśniewska", "Wójcik", "Kamińska", "Lewandowski", "Woźniak")
_SERVICES = (
    ("biopsja nerki", 50),
    ("konsultacja kardiologiczna", 200),
    ("USG jamy brzusznej", 150),
    ("wizyta kontrolna", 120),
    ("EKG spoczynkowe", 80),
    ("konsultacja dermatologiczna", 180),
)
_STREETS = ("Marszałkowska 10", "Długa 5", "Piotrkowska 120", "Floriańska 3", "Grunwaldzka 44")
_PAYMENT = ("not-paid", "waiting_for_confirmation", "paid", "refunded", "charged_back")


class NotificationFactory:
    """Makes DocPlanner notifications from a seeded generator; safe to share between threads."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._serial = 6_000_000 + self._rng.randrange(1_000_000)
        self._places = [self._place(index) for index in range(3)]
        self._builders: dict[str, Callable[[Json, float], Json]] = {
            "slot-booked": lambda base, t: {**base, "visit_booking": self._booking(t, "booked")},
            "booking-canceled": lambda base, t: {
                **base,
                "visit_booking": self._booking(t, "canceled"),
            },
            "booking-confirmed": lambda base, t: {
                **base,
                "visit_booking": self._booking(t, "booked"),
            },
            "booking-moved": self._moved,
            "booking-payment-status-changed": self._payment,
            "break-created": self._break,
            "break-moved": self._break,
            "break-removed": self._break,
            "presence-marked": self._presence,
            "address-service-created": self._address_service,
            "slot-booking": self._booking_request,
            UNKNOWN_NAME: self._check_in,
        }

    def make(self, created_at: float, name: str | None = None) -> Json:
        """One notification created at ``created_at`` (Unix seconds); random name if None."""
        with self._lock:
            if name is None:
                name = self._rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()))[0]
            place = self._rng.choice(self._places)
            base: Json = {
                "facility": dict(place["facility"]),
                "doctor": dict(self._rng.choice(place["doctors"])),
                "address": dict(place["address"]),
            }
            data = self._builders[name](base, created_at)
            return {"name": name, "data": data, "created_at": iso_local(created_at)}

    def batch(self, count: int, now: float) -> list[Json]:
        """``count`` notifications in FIFO order, created over the last few minutes to ``now``."""
        step = min(1.0, 600.0 / max(count, 1))
        return [self.make(now - (count - 1 - index) * step) for index in range(count)]

    # -- pieces ------------------------------------------------------------------------

    def _next_id(self) -> str:
        self._serial += 1
        return str(self._serial)

    def _place(self, index: int) -> Json:
        facility_id = str(1 + index)
        doctors = [
            {
                "id": str(100 + 10 * index + offset),
                "name": self._rng.choice(_FIRST),
                "surname": self._rng.choice(_LAST),
            }
            for offset in range(1 + self._rng.randrange(3))
        ]
        address = {
            "id": str(111 + index),
            "name": f"Przychodnia {facility_id}",
            "street": self._rng.choice(_STREETS),
            "post_code": f"0{index}-{100 + index:03d}",
            "city_name": ("Warszawa", "Kraków", "Łódź")[index],
            "commercial_type": ("premium", "saas-only", "basic")[index],
        }
        return {
            "facility": {"id": facility_id, "name": f"Centrum Medyczne {facility_id}"},
            "doctors": doctors,
            "address": address,
        }

    def _patient(self) -> Json:
        first, last = self._rng.choice(_FIRST), self._rng.choice(_LAST)
        return {
            "name": first,
            "surname": last,
            "email": f"{first.lower()}.{self._rng.randrange(10_000)}@example.com",
            "phone": f"+48{self._rng.randrange(500_000_000, 899_999_999)}",
            "birth_date": f"{self._rng.randrange(1940, 2015)}-0{self._rng.randrange(1, 10)}-15",
            "nin": str(self._rng.randrange(10**10, 10**11)),
            "gender": self._rng.choice(("m", "f")),
            "is_returning": self._rng.random() < 0.4,
            "insurance_number": f"CARD-{self._rng.randrange(10**6, 10**7)}",
        }

    def _service(self) -> Json:
        name, price = self._rng.choice(_SERVICES)
        return {
            "id": str(243_000 + _SERVICES.index((name, price))),
            "name": name,
            "price": price,
            "is_price_from": False,
            "is_visible": True,
        }

    def _slot(self, created_at: float) -> tuple[float, int]:
        start = created_at + 86400 * self._rng.randrange(1, 30)
        start -= start % 1800
        return start, self._rng.choice((15, 30, 45, 60))

    def _booking(self, created_at: float, status: str) -> Json:
        start, duration = self._slot(created_at)
        canceled = status == "canceled"
        return {
            "id": self._next_id(),
            "status": status,
            "start_at": iso_local(start),
            "end_at": iso_local(start + 60 * duration),
            "duration": duration,
            "booked_by": self._rng.choice(("user", "user", "doctor", "integration")),
            "canceled_by": self._rng.choice(("user", "doctor")) if canceled else "",
            "booked_at": iso_local(created_at - self._rng.randrange(60, 86400 * 7)),
            "canceled_at": iso_local(created_at) if canceled else None,
            "address_service": self._service(),
            "patient": self._patient(),
            "comment": self._rng.choice(("", "Proszę o kontakt", "Pierwsza wizyta")),
            "insurance": None,
            "visit_payment": self._rng.random() < 0.3,
        }

    def _moved(self, base: Json, created_at: float) -> Json:
        old = self._booking(created_at, "canceled")
        new = self._booking(created_at, "booked")
        new["patient"] = old["patient"]
        return {**base, "old_visit_booking": old, "new_visit_booking": new}

    def _payment(self, base: Json, created_at: float) -> Json:
        status_from, status_to = self._rng.sample(_PAYMENT, 2)
        change = {"status_from": status_from, "status_to": status_to}
        change["changed_at"] = iso_local(created_at)
        booking = self._booking(created_at, "booked")
        return {**base, "visit_booking": booking, "visit_payment_status": change}

    def _break(self, base: Json, created_at: float) -> Json:
        since, duration = self._slot(created_at)
        pause = {"id": self._next_id(), "since": iso_local(since)}
        pause["till"] = iso_local(since + 60 * duration)
        return {**base, "break": pause}

    def _presence(self, base: Json, created_at: float) -> Json:
        presence = self._rng.choice(("PRESENT", "PRESENT", "ABSENT"))
        return {**base, "visit_booking": self._booking(created_at, "booked"), "presence": presence}

    def _address_service(self, base: Json, created_at: float) -> Json:
        name, price = self._rng.choice(_SERVICES)
        service = {
            "id": self._next_id(),
            "name": name,
            "price": price,
            "is_price_from": self._rng.random() < 0.2,
            "is_default": False,
            "service_id": str(self._rng.randrange(1000, 9999)),
            "description": f"{name} ({iso_local(created_at)[:10]})",
            "is_visible": True,
        }
        return {**base, "address_service": service}

    def _booking_request(self, base: Json, created_at: float) -> Json:
        start, duration = self._slot(created_at)
        request = {
            "booking_at": iso_local(created_at),
            "booking_by": "user",
            "duration": duration,
            "start_at": iso_local(start),
            "end_at": iso_local(start + 60 * duration),
            "address_service": self._service(),
            "patient": self._patient(),
            "signature": f"sig-{self._next_id()}",
            "comment": "",
            "visit_payment": False,
        }
        return {**base, "visit_booking_request": request}

    def _check_in(self, base: Json, created_at: float) -> Json:
        return {**base, "check_in": {"id": self._next_id(), "at": iso_local(created_at)}}


def malformed(serial: int, created_at: float) -> Any:
    """An invalid notification, distinct per ``serial``: a bare string, an object without
    ``name``, or ``data`` that is not an object (rotating through the three)."""
    stamp = iso_local(created_at)
    shapes: list[Any] = [
        f"malformed notification {serial}",
        {"data": {"id": f"malformed-{serial}"}, "created_at": stamp},
        {"name": "slot-booked", "data": f"malformed data {serial}", "created_at": stamp},
    ]
    return shapes[serial % len(shapes)]
