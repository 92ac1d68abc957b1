"""sd_notify without a dependency: one datagram to ``$NOTIFY_SOCKET`` (READY, WATCHDOG, …).

The protocol is a single AF_UNIX datagram; ``@`` names an abstract socket. Ten lines do
not justify the unmaintained ``sdnotify`` package.
"""

from __future__ import annotations

import socket


class Notifier:
    def __init__(self, address: str | None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, message: str) -> bool:
        """Send ``message`` (e.g. ``"READY=1"``); False when not under systemd or it failed."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode())
        except OSError:
            return False
        return True
