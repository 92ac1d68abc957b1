"""Where the daemon's own keys live: beside their stream, in its hash slot (Redis Cluster).

The watermark of a MyInvois account and the lease of an account are such keys; one
function names each, for the sink that writes them and for ``drainer status`` that reads.
"""

from __future__ import annotations


def related_key(stream: str, suffix: str) -> str:
    """A key in the same hash slot as ``stream``.

    ``drainer:{docplanner}`` -> ``drainer:{docplanner}:suffix`` (the tag is kept);
    ``events`` (no tag) -> ``{events}:suffix`` (hashes like ``events`` itself).
    """
    start = stream.find("{")
    if start != -1 and stream.find("}", start + 2) != -1:
        return f"{stream}:{suffix}"
    return f"{{{stream}}}:{suffix}"


def watermark_key(stream: str, account: str) -> str:
    """Where a MyInvois account's watermark is kept: beside its stream, in its hash slot."""
    return related_key(stream, f"watermark:{account}")
