"""``drainer``: the command line (SPEC §5). Exit codes: 0 clean stop, 1 fatal, 2 usage/config.

``main()`` is the only place that reads the environment: it builds the one Settings
object and hands it down.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

import structlog

from daemon import __version__
from daemon.errors import EXIT_FATAL, EXIT_OK, EXIT_USAGE, ConfigError, DrainerError
from daemon.logs import configure_logging, is_configured, journal_stream
from daemon.revision import revision
from daemon.settings import Settings, config_path, load_settings
from daemon.settings.load import security_warnings
from daemon.sink.memory import evicting_policy

Command = Callable[[argparse.Namespace], int]


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="TOML config file (default: $DRAINER_CONFIG, else "
        "/etc/notification-drainer/drainer.toml)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config_path(args.config, os.environ), os.environ)


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.spool.lock import lock_spool

    settings = _settings(args)
    configure_logging(
        settings.log.level,
        settings.log.format,
        settings.secret_values(),
        journal=journal_stream(os.environ.get("JOURNAL_STREAM"), sys.stdout),
    )
    # One daemon per spool: taken before any spool is opened or anything pulled, held until
    # the process exits; a second daemon stops here with one line naming the holder. It also
    # records whether this run ends in an orderly way (drainer_unclean_exits_total).
    spool_lock = lock_spool(settings.spool.dir, settings.server.listen)
    orderly = False
    try:
        code = _run_locked(args, settings, spool_lock.unclean_exits)
        orderly = code == EXIT_OK
        return code
    except ConfigError:
        orderly = True  # exit 2: systemd does not restart it; not a crash
        raise
    finally:
        if orderly:
            spool_lock.mark_clean()


def _run_locked(args: argparse.Namespace, settings: Settings, unclean_exits: int) -> int:
    from daemon.runtime.run import Runtime
    from daemon.runtime.signals import capture_signals
    from daemon.runtime.systemd import Notifier
    from daemon.runtime.wiring import build

    for problem in security_warnings(settings, config_path(args.config, os.environ), os.environ):
        structlog.get_logger("daemon").warning("config.insecure", problem=problem)
    parts = build(settings)
    parts.metrics.unclean_exits.inc(unclean_exits)
    policy = evicting_policy(parts.redis)
    if policy is not None and not settings.redis.allow_eviction:
        raise ConfigError(
            f"redis.allow_eviction: Redis maxmemory-policy is {policy}: it can evict "
            "de-duplication keys and let duplicates through; set it to noeviction (or "
            "allow_eviction = true)"
        )
    if policy is not None:
        structlog.get_logger("daemon").warning("redis.eviction_allowed", policy=policy)
    path, environ = config_path(args.config, os.environ), dict(os.environ)
    try:
        runtime = Runtime(
            parts,
            Notifier(os.environ.get("NOTIFY_SOCKET")),
            load=lambda: load_settings(path, environ),  # SIGHUP: the same file and environment
        )
    except OSError as exc:  # the listener could not bind: one line, not a traceback
        raise DrainerError(
            f"cannot listen on server.listen {settings.server.listen}: {exc.strerror or exc}"
        ) from None
    with capture_signals(runtime.signals, exit_on_second=True, reload=True):
        return runtime.run()


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args.config, os.environ)
    settings = load_settings(path, os.environ)
    for problem in security_warnings(settings, path, os.environ):
        print(f"# warning: {problem}", file=sys.stderr)
    print(f"# {path}: OK", file=sys.stderr)
    print(json.dumps(settings.redacted(), indent=2))
    if args.connect:
        from daemon.commands.connect import run_checks

        return run_checks(settings)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drainer",
        description="Drain DocPlanner and MyInvois notifications into de-duplicated Redis streams.",
        epilog="Exit codes: 0 clean stop, 1 fatal runtime error, 2 usage or config error.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__} (revision {revision()})"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run the daemon in the foreground",
        description="Run the daemon in the foreground (systemd Type=notify). SIGTERM/SIGINT: "
        "stop pulling, publish what is spooled, exit 0 within 20 s; a second signal exits "
        "at once. SIGHUP: re-read the config and start, restart or retire accounts. Logs go "
        "to stdout in the [log] format (json by default, or console).",
    )
    _config_arg(run)
    run.set_defaults(func=cmd_run)

    check = commands.add_parser(
        "check-config",
        help="validate the config; print it, redacted",
        description="Validate the configuration and print the effective settings (file + "
        "DRAINER_ environment overrides) as JSON with every secret replaced by ***. "
        "A problem exits 2 with one line naming the file and the key.",
    )
    _config_arg(check)
    check.add_argument(
        "--connect",
        action="store_true",
        help="also connect: Redis (auth, version, eviction policy, durability), a token per "
        "account, one small MyInvois page; nothing is pulled. One line per check on stderr; "
        "exit 1 naming what failed",
    )
    check.set_defaults(func=cmd_check_config)

    # Commands whose implementation lives in its own module (``add_arguments`` + ``run``).
    # Plain imports: a missing module or dependency is an error here, never a lost command.
    from daemon.commands import backfill, deadletter, share, status
    from daemon.commands.demo import run as demo
    from daemon.sandbox import cli as sandbox

    for name, module, help_text in (
        ("status", status, "per account: cursor, spool backlog, stream length, last success"),
        ("backfill", backfill, "MyInvois one-off window with a progress bar"),
        ("demo", demo, "local sandboxes + Redis + the daemon, with a live view; no setup"),
        ("sandbox", sandbox, "run the DocPlanner and MyInvois sandboxes alone"),
        ("share", share, "print the unit, example config, dashboard or alert rules"),
        ("deadletter", deadletter, "list, show and redrive dead-letter entries"),
    ):
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"drainer: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DrainerError as exc:  # one line: a log event under `run`, else on stderr
        if is_configured():
            structlog.get_logger("daemon").error("drainer.fatal", error=str(exc))
        else:
            print(f"drainer: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        return EXIT_OK
