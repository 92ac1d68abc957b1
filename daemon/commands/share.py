"""``drainer share``: print an operations file carried by the installed package.

The wheel (the release artifact) carries the files an install needs beside the code: the
systemd unit, the example config, the Grafana dashboard and the Prometheus alert rules with
their promtool test, and the stream contract for consumer authors (JSON Schemas, AsyncAPI;
package data of ``drainer_consumer``). They live in ``deploy/`` and ``config/`` of the repository;
``daemon/share/`` links to them and the wheel holds copies, so a host with only the wheel
installed gets the files of exactly that version::

    drainer share --list
    drainer share notification-drainer.service > /etc/systemd/system/notification-drainer.service
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.resources import files
from importlib.resources.abc import Traversable

from daemon.errors import EXIT_OK, EXIT_USAGE

SHARED = {
    "notification-drainer.service": "the systemd unit (deploy/systemd/)",
    "drainer.example.toml": "the example config (config/), secrets as *_file names",
    "notification-drainer.json": "the Grafana dashboard (deploy/grafana/)",
    "alerts.yml": "the Prometheus alert rules (deploy/prometheus/)",
    "alerts.test.yml": "their promtool unit test: promtool test rules alerts.test.yml",
    "stream-entry.schema.json": "JSON Schema of a stream entry, schema 1 (consumer kit)",
    "deadletter-entry.schema.json": "JSON Schema of a dead-letter entry (consumer kit)",
    "asyncapi.json": "AsyncAPI 3.0 document of the three streams (consumer kit)",
    "constraints.txt": "the dependency versions CI tested: pip install -c constraints.txt",
}
# The consumer kit's contract files, package data of drainer_consumer (read, never imported).
CONTRACT = ("stream-entry.schema.json", "deadletter-entry.schema.json", "asyncapi.json")
EPILOG = "Files:\n" + "\n".join(f"  {name:30} {what}" for name, what in SHARED.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``drainer share`` arguments: one file name, or ``--list``."""
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("name", nargs="?", metavar="NAME", help="print this file to stdout")
    choice.add_argument("--list", action="store_true", help="list the files, one per line")


def shared_file(name: str) -> Traversable:
    """The installed copy of one shared file (a wheel's, or the checkout's via daemon/share)."""
    if name in CONTRACT:
        return files("drainer_consumer").joinpath("schemas", name)
    return files("daemon").joinpath("share", name)


def run(args: argparse.Namespace) -> int:
    """Print the list, or one file; an unknown name is a usage error (exit 2)."""
    if args.list:
        text = "".join(f"{name}\t{what}\n" for name, what in SHARED.items())
    elif args.name in SHARED:
        text = shared_file(args.name).read_text(encoding="utf-8")
    else:
        print(f"drainer share: no file named {args.name!r} (drainer share --list)", file=sys.stderr)
        return EXIT_USAGE
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `drainer share alerts.yml | head`: the reader left early
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush stays quiet
    return EXIT_OK
