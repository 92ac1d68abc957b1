"""The daemon's HTTP surface (SPEC §6) on an embedded waitress server.

- :mod:`.apps`: the WSGI apps (push, /metrics, /healthz, /readyz) and the pre-body gate;
- :mod:`.strict`: waitress subclasses: strict framing, auth before the body, the deadline;
- :mod:`.listener`: start/stop of one server in a thread; the main + push-only listeners;
- :mod:`.stats`: responses by code, open connections, worker pool saturation;
- :mod:`.logbridge`: stdlib logging (waitress) into structlog, never plain stderr.
"""
