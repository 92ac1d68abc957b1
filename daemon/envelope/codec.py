"""The JSON codec of the envelope: strict parsing, canonical text, raw bytes of an item.

Pure: no I/O. Event ids hash the canonical text, so it must be the same whichever parser
read the body: orjson where it is exact, the ``json`` module where it may not be
(:class:`InexactJsonError`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from daemon.envelope.entries import Unreadable

# Number text where orjson and ``json`` may differ: exponents (also every integer orjson
# read as a float because it does not fit 64 bits) and floats below 1e-4.
_FLOAT_TEXT = re.compile(rb"(?:^|[:,\[])-?(?:\d+(?:\.\d+)?e|0\.0000)")


class InexactJsonError(Exception):
    """orjson's value or text of this batch could differ from ``json``'s: redo it with ``json``."""


_DIGITS_TO_0 = bytes.maketrans(b"123456789", b"000000000")


def _may_differ(text: bytes) -> bool:
    """Cheap finds first (C speed); the regex only when a candidate is there."""
    zeroed = text.translate(_DIGITS_TO_0)  # "presence-marked" is no candidate, "1e-05" is
    if b"0e+" in zeroed or b"0e-" in zeroed or b"0.0000" in zeroed:
        return _FLOAT_TEXT.search(text) is not None
    return False


def canonical_json(value: Any, *, finite: bool = False) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the same object always hashes the same.

    The text is always that of ``json.dumps(sort_keys=True, ensure_ascii=False)``, which
    the event ids were defined with. ``finite=True`` (a value orjson parsed: no NaN or
    Infinity inside) lets orjson write it, several times faster. Raises
    :class:`InexactJsonError` when the text holds a number the two libraries could read
    or write differently, so the caller re-parses the body with ``json``.
    """
    if finite:
        return canonical_bytes(value).decode()
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(value: Any, *, check: bool = True) -> bytes:
    """:func:`canonical_json`'s UTF-8 text of a value orjson parsed (``finite``), as orjson
    wrote it. ``check=False`` leaves the number check to the caller: a batch checks all its
    items' texts at once with :func:`texts_may_differ` (one scan instead of one per item).
    """
    try:
        fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # nested deeper than 254: json decides, from the bytes
        raise InexactJsonError("nested deeper than orjson writes") from None
    if check and _may_differ(fast):
        raise InexactJsonError("a number orjson and json may read or write differently")
    return fast


def texts_may_differ(texts: list[bytes]) -> bool:
    """:func:`_may_differ` of several object texts in one scan (a newline never belongs to a
    number, and each text starts with ``{``, so the joined check finds exactly what the
    separate checks would)."""
    return _may_differ(b"\n".join(texts))


def loads(raw: bytes, *, strict: bool = True) -> Any:
    """Strict RFC 8259 ``json.loads``: ``NaN``/``Infinity``/``-Infinity`` and numbers that
    overflow a double (``1e999``, re-encoded as ``Infinity``) raise ValueError, and so does
    hostile nesting (instead of RecursionError).

    ``strict=False`` is Python's own reading (those values accepted), for a MyInvois page:
    re-readable upstream, so its good items go on and the bad ones are dead-lettered.
    """
    checks: dict[str, Any] = (
        {"parse_constant": _reject_constant, "parse_float": _finite_float} if strict else {}
    )
    try:
        return json.loads(raw, **checks)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _reject_constant(name: str) -> Any:
    """Python's json accepts these non-JSON literals; strict consumers cannot parse them."""
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows a double")
    return value


def parse_fast(raw: bytes) -> tuple[Any, bool]:
    """``(value, finite)``: orjson's value when it reads ``raw``, else :func:`loads`'.

    orjson reads strict JSON only: NaN/Infinity, lone surrogates and UTF-16 are left to
    ``json``. ``finite`` means orjson read it; its integers beyond 64 bits became floats,
    which :func:`canonical_json` notices (see :class:`InexactJsonError`).
    """
    try:
        return orjson.loads(raw), True
    except orjson.JSONDecodeError:
        return loads(raw), False  # the json module accepts or rejects it, with its message


def to_raw(value: Any, *, finite: bool = False) -> bytes:
    """The JSON bytes of one item, for dead-lettering an item of a parsed batch.

    ``finite`` (orjson parsed it): raises :class:`InexactJsonError` where ``json`` could
    have parsed the body differently.
    """
    if isinstance(value, Unreadable):
        return value.raw
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        if finite:
            raise InexactJsonError("nested deeper than json writes") from None
        raise
    if finite and _may_differ(text.encode(errors="surrogatepass")):
        raise InexactJsonError("a number orjson and json may read differently")
    try:
        return text.encode()
    except UnicodeEncodeError:  # an unpaired surrogate escape: keep it escaped
        return json.dumps(value, separators=(",", ":")).encode()
