"""notification-drainer: DocPlanner and MyInvois notifications onto Redis streams."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("notification-drainer")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
