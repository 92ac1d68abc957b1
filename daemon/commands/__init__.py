"""commands: the operator's subcommands beside ``drainer run`` (status, backfill, demo).

``daemon.cli`` imports every command module to build its parser, so a module here imports
``rich`` (the optional ``ui`` extra) only inside the function that draws with it.
"""

UI_EXTRA_MISSING = "this needs the optional ui extra (rich): pip install 'notification-drainer[ui]'"
