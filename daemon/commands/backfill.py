"""``drainer backfill``: read a past MyInvois range once, with a progress bar (SPEC §5).

The bar is ``rich`` (the optional ``ui`` extra); without it, plain progress lines
(:mod:`daemon.commands.progress`).

The range is walked exactly as the live poll walks it -- bounded windows, oldest first,
every page until ``hasNext`` is false, each window published oldest first with the same
``event_id`` -- by the same :class:`~daemon.sources.myinvois.poll.MyInvoisPoller` driven by a
:class:`~daemon.sources.myinvois.window.RangeCursor`, so whatever is already on the
stream is skipped by the sink's de-duplication. The live watermark is never read or moved.

Safe to interrupt: Ctrl-C stops between requests; rerunning the same command publishes
only what is missing. The account's ``requests_per_minute`` budget is respected (spread
evenly); a running daemon polling the same account has its own budget, so give the
backfill a share with ``--requests-per-minute`` when both run at once.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from daemon.commands.progress import progress
from daemon.errors import (
    EXIT_OK,
    AuthError,
    BadRequestError,
    ConfigError,
    ForbiddenError,
    SinkError,
)
from daemon.logs import configure_logging
from daemon.metrics import Metrics
from daemon.publisher import Publisher
from daemon.runtime.wiring import myinvois_poller
from daemon.settings import MyInvoisAccount, config_path, load_settings, parse_timestamp, redact_url
from daemon.sink import RedisSink, connect
from daemon.sources.myinvois.api import MyInvoisApi, whole_seconds
from daemon.sources.myinvois.poll import MyInvoisPoller, build_api
from daemon.sources.myinvois.window import SAFETY_LAG, RangeCursor
from daemon.spool import SpoolBudget, SpoolLog

INTERRUPTED = "interrupted; rerun to continue — already published entries will be de-duplicated"
SLICE = 0.25  # wait in short slices so the bar and Ctrl-C stay responsive


def _timestamp(value: str) -> datetime:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", required=True, metavar="NAME", help="a [[myinvois]] name")
    parser.add_argument(
        "--since", required=True, type=_timestamp, metavar="T", help="RFC 3339, inclusive"
    )
    parser.add_argument(
        "--until", required=True, type=_timestamp, metavar="T", help="RFC 3339, inclusive"
    )
    parser.add_argument(
        "--requests-per-minute",
        type=int,
        metavar="N",
        help="lower budget than the account's (e.g. while the daemon polls the same account)",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML config file (default: $DRAINER_CONFIG, else "
        "/etc/notification-drainer/drainer.toml)",
    )


def window_warning(since: datetime, window: float, now: float) -> str | None:
    """A warning when ``since`` is older than the MyInvois de-duplication window."""
    oldest = now - window
    if since.timestamp() >= oldest:
        return None
    edge = datetime.fromtimestamp(oldest, tz=since.tzinfo).isoformat()
    return (
        f"warning: --since {since.isoformat()} is older than the MyInvois de-duplication "
        f"window ({window / 86400:g} days, [redis] dedupe_window_myinvois): notifications "
        f"published before {edge} may be published again"
    )


def pipeline(
    account: MyInvoisAccount,
    api: MyInvoisApi,
    sink: RedisSink,
    metrics: Metrics,
    stream: str,
    deadletter_stream: str,
    cursor: RangeCursor,
    spool_dir: Path,
) -> tuple[MyInvoisPoller, Publisher]:
    """A backfill poller and its publisher, joined by a scratch spool in ``spool_dir``."""
    spool = SpoolLog(spool_dir, SpoolBudget(1 << 40))  # one window at a time is spooled
    publisher = Publisher(
        "myinvois", account.name, spool, sink, metrics, deadletter_stream, count_deadletters=True
    )
    poller = myinvois_poller(
        account, api, publisher, metrics, stream, deadletter_stream, cursor, role="backfill"
    )
    return poller, publisher


def walk(
    poller: MyInvoisPoller,
    publisher: Publisher,
    cursor: RangeCursor,
    clock: Callable[[], float] = time.monotonic,
    deadline: float | None = None,
    on_tick: Callable[[], None] = lambda: None,
) -> bool:
    """Tick until the range is read and published (True) or ``deadline`` passes (False).

    The poller spools each window; the publisher takes it to Redis (the daemon's one path,
    through a temporary spool). Credentials or permission problems end the walk (raised):
    a one-off command should not retry a wrong secret forever. Everything else is retried
    with the poller's or the publisher's backoff.
    """
    while not (cursor.finished and not publisher.spool.pending_records):
        wait = poller.tick(clock())
        while publisher.spool.pending_records:
            delay = publisher.tick(clock())
            if delay > 0 and publisher.spool.pending_records:
                wait = delay  # Redis trouble: back off, then try again
                break
        on_tick()
        if isinstance(poller.last_error, AuthError | ForbiddenError | BadRequestError):
            raise poller.last_error
        if cursor.finished and not publisher.spool.pending_records:
            break
        until = clock() + wait
        while clock() < until:
            if deadline is not None and clock() >= deadline:
                return False
            time.sleep(min(SLICE, max(0.0, until - clock())))
            on_tick()
        if deadline is not None and clock() >= deadline:
            return cursor.finished and not publisher.spool.pending_records
    return True


def run(args: argparse.Namespace) -> int:
    path = config_path(args.config, os.environ)
    settings = load_settings(path, os.environ)
    account = settings.myinvois_account(args.account)
    if account is None:
        names = ", ".join(a.name for a in settings.myinvois) or "none"
        raise ConfigError(
            f"{path}: --account: no [[myinvois]] account named {args.account!r} "
            f"(configured: {names})"
        )
    since: datetime = args.since
    until: datetime = min(args.until, whole_seconds(time.time() - SAFETY_LAG))
    if since >= until:
        raise ConfigError(f"--since ({args.since.isoformat()}) must be before --until (and now)")
    if args.requests_per_minute is not None and args.requests_per_minute < 1:
        raise ConfigError("--requests-per-minute must be at least 1")

    metrics = Metrics(CollectorRegistry(), [("myinvois", account.name)])
    client = connect(settings.redis)  # TLS, Sentinel or Cluster as configured
    streams = settings.streams
    sink = RedisSink.configured(client, settings)  # durable as ``drainer run`` publishes
    api = build_api(account, metrics, requests_per_minute=args.requests_per_minute)
    cursor = RangeCursor(since, until)
    scratch = tempfile.TemporaryDirectory(prefix="drainer-backfill-")
    poller, publisher = pipeline(
        account,
        api,
        sink,
        metrics,
        streams.myinvois,
        streams.deadletter,
        cursor,
        Path(scratch.name),
    )
    shown = progress(account.name, cursor.total)
    secrets = [account.secret()]
    warning = window_warning(since, sink.dedupe_window(streams.myinvois), time.time())
    if warning:
        shown.say(warning)
    try:
        if not sink.ping():
            raise SinkError(f"redis at {redact_url(settings.redis.url)} is not answering")
        with shown:
            # Inside the live display so log lines print above the bar on a terminal.
            configure_logging(settings.log.level, settings.log.format, secrets)

            def update() -> None:
                shown.update(
                    cursor.covered(poller.window),
                    poller.requests,
                    poller.notifications,
                    publisher.published,
                )

            try:
                walk(poller, publisher, cursor, on_tick=update)
            except KeyboardInterrupt:
                update()
                shown.stop()
                shown.say(INTERRUPTED)
                return EXIT_OK
        shown.say(
            f"backfill {account.name} {since.isoformat()} .. {until.isoformat()}: "
            f"{cursor.windows} windows, {poller.requests} requests, "
            f"{poller.notifications} notifications, {publisher.published} published, "
            f"{publisher.duplicates} already on the stream"
        )
        return EXIT_OK
    finally:
        api.http.close()
        client.close()
        scratch.cleanup()
