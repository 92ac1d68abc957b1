"""The daemon's HTTP surface (SPEC §6) on an embedded waitress server.

- :mod:`.apps`: the WSGI apps (push, /metrics, /healthz, /readyz) and the pre-body gate;
- :mod:`.gate`: the header-time verdict (404/405/413, then 429/403/401 for a push);
- :mod:`.allow`: push headers and source allowlists (static and published, fetched daily);
- :mod:`.strict`: waitress parser/channel/task subclasses: strict framing, the gate;
- :mod:`.conns`: the server: idle and request deadlines, per-source caps, EMFILE back-off;
- :mod:`.descriptors`: RLIMIT_NOFILE against the connection limits, at start;
- :mod:`.listener`: start/stop of one server in a thread; the main + push-only listeners;
- :mod:`.stats`: responses by code, open connections, worker pool saturation;
- :mod:`.logbridge`: stdlib logging (waitress) into structlog, never plain stderr.
"""
