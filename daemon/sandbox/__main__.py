"""``python -m daemon.sandbox`` is ``drainer sandbox``."""

import argparse

from daemon.sandbox import cli

parser = argparse.ArgumentParser(
    prog="python -m daemon.sandbox", description="Run the DocPlanner and MyInvois sandboxes."
)
cli.add_arguments(parser)
raise SystemExit(cli.run(parser.parse_args()))
