"""Value types of the push intake's settings: CIDR lists, a header name, the token minimum.

- :data:`Networks`: a list of CIDRs (``"203.0.113.0/24"``, ``"2001:db8::/32"``) or single
  addresses, parsed with :func:`ipaddress.ip_network` (host bits may be set);
- :data:`HeaderName`: an HTTP field name a push key may travel in (RFC 9110 §5.1 token,
  without ``_``: waitress drops such fields, so a key sent in one would never be seen),
  and not one the HTTP framing or the proxies own;
- :data:`MIN_PUSH_TOKEN`: the shortest push token accepted (a config error below it).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import BeforeValidator

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MIN_PUSH_TOKEN = 16  # characters: shorter keys are guessable (and were only a warning before)

_FIELD = re.compile(r"^[A-Za-z0-9!#$%&'*+.^`|~-]{1,64}$")
_RESERVED = {
    "host", "content-length", "transfer-encoding", "connection", "expect", "te", "upgrade",
    "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip",
    "content-type", "trailer", "keep-alive", "proxy-connection",
}  # fmt: skip


def parse_networks(value: object) -> list[IPNetwork]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError('expected a list of CIDRs, e.g. ["203.0.113.0/24"]')
    networks: list[IPNetwork] = []
    for item in value:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(item)
            continue
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{str(item)[:60]!r} is not a CIDR or an IP address") from None
    return networks


def parse_header_name(value: object) -> str:
    if not isinstance(value, str) or not _FIELD.match(value) or "_" in value:
        raise ValueError("must be an HTTP header name: letters, digits and '-' (no '_')")
    if value.lower() in _RESERVED:
        raise ValueError(f"{value} is used by HTTP itself; agree another name")
    return value


Networks = Annotated[list[IPNetwork], BeforeValidator(parse_networks)]
HeaderName = Annotated[str, BeforeValidator(parse_header_name)]


def wsgi_key(header: str) -> str:
    """The key waitress gives a request header: ``X-Drainer-Token`` -> ``X_DRAINER_TOKEN``."""
    return header.upper().replace("-", "_")
