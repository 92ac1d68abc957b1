"""`python -m daemon` is `drainer`."""

from daemon.cli import main

raise SystemExit(main())
