"""The local write-ahead spool (SPEC §2): :mod:`.frame` is the codec, :mod:`.log` the files,
:mod:`.read` a read-only view (for `drainer status`), :mod:`.files` private files, :mod:`.lock`."""

from daemon.spool.frame import (
    MAGIC,
    RawBatch,
    Record,
    decode_entries,
    decode_payload,
    encode_record,
    scan,
)
from daemon.spool.log import SpoolBudget, SpoolLog

__all__ = [
    "MAGIC",
    "RawBatch",
    "Record",
    "SpoolBudget",
    "SpoolLog",
    "decode_entries",
    "decode_payload",
    "encode_record",
    "scan",
]
