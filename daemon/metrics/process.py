"""Process metrics on the daemon's own registry (the daemon never uses the global one).

``process_resident_memory_bytes`` is what to compare with the unit's ``MemoryMax``;
``process_start_time_seconds`` changes on every restart (the ``DrainerRestarting`` alert);
``python_info`` names the interpreter.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector


def register_process_metrics(registry: CollectorRegistry) -> None:
    """Add the ``process_*`` and ``python_info`` series to ``registry``."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
