"""Fault injection shared by both simulators: scripted (in order) or random (seeded).

A fault is drawn once per request on the notification endpoints (never on the token
endpoint). The simulator decides what each kind means for its protocol:

=============== ===============================================================
``500``/``503`` an error status with the API's error body
``429``         rate limited, with ``Retry-After`` and the API's rate headers
``403``         forbidden, with the API's error body (a refusal that later stops)
``400``         bad request, with the API's error body (nothing popped or served)
``waf``         ``405`` with an HTML challenge page (``text/html``)
``reset``       the connection is closed before anything is popped
``reset_after`` DocPlanner pops the batch, then closes without a response
``truncate``    a valid HTTP response whose JSON body is cut in half
``malformed``   a real batch/page with one or two invalid items mixed in
``slow:S``      the request is delayed ``S`` seconds, then served normally
``slow_answer:S`` served normally (a pull pops its batch), the answer sent ``S`` s later
``token_expired`` every token is revoked first, so the request gets ``401``
``ok``          no fault (only useful inside a script)
=============== ===============================================================
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

KINDS = (
    "500",
    "503",
    "429",
    "403",
    "400",
    "waf",
    "reset",
    "reset_after",
    "truncate",
    "malformed",
    "slow",
    "slow_answer",
    "token_expired",
)
"""Every fault kind; ``slow`` and ``slow_answer`` take ``:SECONDS`` in scripts and rate tables."""

DELAYED = ("slow", "slow_answer")

RETRY_AFTER_SECONDS = 1
"""How long an injected ``429`` asks the client to wait (short, to keep tests fast)."""


@dataclass(frozen=True)
class Fault:
    """One injected failure: ``kind`` from :data:`KINDS`, ``seconds`` for ``slow``."""

    kind: str
    seconds: float = 0.0

    @classmethod
    def parse(cls, spec: str | Fault) -> Fault | None:
        """``"503"``, ``"slow:1.5"`` -> a Fault; ``"ok"`` -> None; anything else -> ValueError."""
        if isinstance(spec, Fault):
            return spec
        name, _, arg = spec.strip().partition(":")
        if name == "ok":
            return None
        if name not in KINDS:
            raise ValueError(f"unknown fault {spec!r}; expected one of {', '.join(KINDS)}")
        if name in DELAYED:
            try:
                seconds = float(arg) if arg else 1.0
            except ValueError:
                raise ValueError(f"bad delay in fault {spec!r}; expected {name}:SECONDS") from None
            if seconds < 0:
                raise ValueError(f"negative delay in fault {spec!r}")
            return cls(name, seconds)
        if arg:
            raise ValueError(f"fault {name!r} takes no argument")
        return cls(name)

    def __str__(self) -> str:
        return f"{self.kind}:{self.seconds:g}" if self.kind in DELAYED else self.kind


class Faults:
    """Thread-safe fault source: a script is used up first, then the random rates apply."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._script: deque[Fault | None] = deque()
        self._rates: list[tuple[Fault, float]] = []
        self._random = random.Random(seed)
        self.injected: list[Fault] = []
        """Every fault handed out so far, in order (for assertions)."""

    def script(self, specs: Iterable[str | Fault]) -> None:
        """Replace the script: the next requests get these faults, one each, in order."""
        parsed = [Fault.parse(spec) for spec in specs]
        with self._lock:
            self._script = deque(parsed)

    def set_rates(self, rates: Mapping[str, float], seed: int | None = None) -> None:
        """Each request independently gets fault ``k`` with probability ``rates[k]``."""
        table: list[tuple[Fault, float]] = []
        for spec, rate in rates.items():
            fault = Fault.parse(spec)
            if fault is None or not 0.0 <= rate <= 1.0:
                raise ValueError(f"bad fault rate {spec!r}: {rate!r}")
            table.append((fault, rate))
        if sum(rate for _, rate in table) > 1.0:
            raise ValueError("fault rates add up to more than 1")
        with self._lock:
            self._rates = table
            if seed is not None:
                self._random = random.Random(seed)

    def clear(self) -> None:
        """No more faults: drop the script and the rates."""
        with self._lock:
            self._script.clear()
            self._rates = []

    def pending(self) -> int:
        """How many scripted entries are left."""
        with self._lock:
            return len(self._script)

    def draw(self) -> Fault | None:
        """The fault for the request being served now, or None."""
        with self._lock:
            if self._script:
                fault = self._script.popleft()
            else:
                fault = None
                roll = self._random.random() if self._rates else 1.0
                for candidate, rate in self._rates:
                    if roll < rate:
                        fault = candidate
                        break
                    roll -= rate
            if fault is not None:
                self.injected.append(fault)
            return fault


def all_kinds_rates(total: float) -> dict[str, float]:
    """Spread a total fault probability over every kind (``slow`` as ``slow:0.5``)."""
    names = [f"{kind}:0.5" if kind in DELAYED else kind for kind in KINDS]
    return {name: total / len(names) for name in names}
