"""Reading a page or batch that JSON cannot read whole, item by item (SPEC §2, poison items).

One item nested deeper than the parser goes, or holding an integer of more than 4300
digits, makes ``json.loads`` reject the whole body. A MyInvois page would then be asked
for again for ever (the account stalls) and a DocPlanner batch would be dead-lettered
whole. :func:`salvage` splits the body's item array with a byte scanner (nothing parsed,
nothing recursive) and parses each item on its own; the ones that still cannot be read
become :class:`~daemon.envelope.entries.Unreadable` and are dead-lettered with their bytes.
A truncated body does not scan and stays unreadable as a whole. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from daemon.envelope.codec import loads
from daemon.envelope.entries import Unreadable

UNREADABLE_WHOLE = ("nested too deeply", "integer string conversion")
"""The parse errors an item causes on its own (the rest of the body being fine): the body is
worth reading item by item. Anything else (truncation, NaN, not JSON) is about the body."""


def salvage(body: bytes, key: str, *, strict: bool = False) -> dict[str, Any] | None:
    """A body that JSON cannot read whole, read item by item: the top-level object with its
    ``key`` array's elements parsed one at a time, each one that cannot be an
    :class:`Unreadable`. None when the body is not such an object (e.g. truncated): then
    it is unreadable as a whole. ``strict`` as in :func:`~daemon.envelope.codec.loads`.
    """
    split = _split_array(body, key.encode())
    if split is None:
        return None
    elements, rest = split
    try:
        document = loads(rest, strict=strict)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    items: list[Any] = []
    for element in elements:
        try:
            items.append(loads(element, strict=strict))
        except (ValueError, RecursionError) as exc:
            items.append(Unreadable(element, str(exc)[:200]))
    document[key] = items
    return document


def _split_array(body: bytes, key: bytes) -> tuple[list[bytes], bytes] | None:
    """The raw elements of the array under ``key`` in the top-level object, and the body
    with that array emptied; None when the body does not scan (unterminated, not an object).
    A byte scanner: strings and nesting are tracked, nothing is parsed, nothing recurses.
    """
    text = body.strip()
    if not text.startswith(b"{"):
        return None
    depth, index, last_string = 0, 0, b""
    opened = start = -1
    elements: list[bytes] = []
    while index < len(text):
        char = text[index]
        if char == 0x22:  # a string: skip to its closing quote
            end = index + 1
            while end < len(text) and text[end] != 0x22:
                end += 2 if text[end] == 0x5C else 1
            if end >= len(text):
                return None
            if depth == 1:
                last_string = text[index + 1 : end]
            index = end + 1
            continue
        if char in b"[{":
            depth += 1
            if depth == 2 and char == 0x5B and opened < 0 and last_string == key:
                opened = start = index + 1
        elif char in b"]}":
            if depth == 2 and opened >= 0 and char == 0x5D:
                tail = text[start:index].strip()
                if tail or elements:
                    elements.append(tail)
                return elements, text[: opened - 1] + b"[]" + text[index + 1 :]
            depth -= 1
        elif char == 0x2C and depth == 2 and opened >= 0:
            elements.append(text[start:index].strip())
            start = index + 1
        index += 1
    return None
