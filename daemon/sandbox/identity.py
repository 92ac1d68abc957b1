"""The MyInvois identity service: ``POST /connect/token``, and the TIN each token is bound to.

Follows the official login pages (Login as Taxpayer System, Login as Intermediary System:
https://sdk.myinvois.hasil.gov.my/api/07-login-as-taxpayer-system/ and
https://sdk.myinvois.hasil.gov.my/api/08-login-as-intermediary-system/). The identity
service can run on the API's own port (the official FAQ's environment table puts it on
the same host) or on a port of its own (:class:`IdentityServer`), as a production
identity host may be separate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from daemon.sandbox.clock import SandboxClock
from daemon.sandbox.oauth import TokenStore
from daemon.sandbox.server import Request, Response, SandboxServer, json_body

TOKEN_PATH = "/connect/token"  # noqa: S105 - a URL path, not a secret
SCOPE = "InvoicingAPI"


@dataclass(frozen=True)
class Login:
    """What the identity service knows of one client: its secret and whom it may act as."""

    secret: str
    tins: frozenset[str]  # a taxpayer's own TIN, or the taxpayers an intermediary represents
    intermediary: bool


def _oauth(status: int, body: dict[str, Any]) -> Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    return Response(status, json_body(body), "application/json", headers)


def _refused(error: str, description: str) -> Response:
    # Login pages, "Error Responses: 400 Bad Request": error + error_description.
    return _oauth(400, {"error": error, "error_description": description})


Gate = Callable[[str, str | None], Response | None]  # (client_id, TIN) -> a 429, or None


def login(
    request: Request,
    clients: Mapping[str, Login],
    store: TokenStore,
    ttl: float,
    now: float,
    gate: Gate | None = None,
) -> Response:
    """One ``POST /connect/token``; the token is bound to the TIN it may read.

    ``gate`` sees every login about to be granted and may refuse it (the per-Client-ID
    login limit); refused credentials never reach it (docs silent: they are not counted).
    """
    form = parse_qs(request.body.decode("utf-8", "replace"))
    client_id = form.get("client_id", [None])[0]
    secret = form.get("client_secret", [None])[0]
    if client_id is None or secret is None:
        # Login pages: client_id and client_secret are Mandatory *body* parameters; no
        # other way to send them is documented (HTTP Basic included): refused.
        return _refused("invalid_request", "client_id and client_secret are required")
    known = clients.get(client_id)
    if known is None or known.secret != secret:
        # Login pages: rejected when "invalid client ID and secret is used".
        return _refused("invalid_client", "Invalid client")
    if form.get("grant_type", [None])[0] != "client_credentials":
        # Login pages: grant_type "Must be 'client_credentials'" (Mandatory).
        return _refused("unsupported_grant_type", "grant_type must be client_credentials")
    scope = form.get("scope", [None])[0]
    if scope is not None and scope != SCOPE:
        # Login pages: scope is Optional ("can be omitted"); the example value is InvoicingAPI.
        return _refused("invalid_scope", f"scope must be {SCOPE} or omitted")
    behalf = request.header("onbehalfof")
    if behalf is not None and not (known.intermediary and behalf in known.tins):
        # Intermediary page: onbehalfof maps to a taxpayer the intermediary represents;
        # a TIN it does not represent, or a taxpayer client sending it: docs silent;
        # stricter than the client (refused at login).
        return _refused("invalid_grant", "Not authorized to act on behalf of this taxpayer")
    # Login pages, "Additional Considerations": "Each token already includes information
    # about the taxpayer that the system is going to represent". A taxpayer's token is
    # bound to its own TIN; an intermediary's to the onbehalfof TIN, or to no taxpayer at
    # all after a plain login (docs silent; stricter than the client).
    own = next(iter(known.tins)) if not known.intermediary else None
    subject = behalf if behalf is not None else own
    refused = gate(client_id, subject) if gate is not None else None
    if refused is not None:
        return refused
    token = store.issue(client_id, ttl, now, subject)
    # Login pages, success response: access_token, token_type Bearer, expires_in 3600, scope.
    body = {"access_token": token, "token_type": "Bearer", "expires_in": int(ttl)}
    return _oauth(200, {**body, "scope": SCOPE})


class IdentityServer(SandboxServer):
    """The identity service on its own port: ``/connect/token`` only.

    Login pages: "Authentication of the systems is done on identity service, not on the
    service hosting actual integration APIs."
    """

    def __init__(
        self,
        handle_login: Callable[[Request], Response],
        *,
        clock: SandboxClock,
        host: str,
        port: int,
    ) -> None:
        super().__init__(clock=clock, latency=0.0, host=host, port=port, seed=0)
        self._login = handle_login

    def handle(self, request: Request) -> Response:
        if request.path != TOKEN_PATH:
            # The identity service hosts no integration API (login pages, above).
            return _oauth(404, {"error": "not_found"})
        if request.method != "POST":
            # Login pages: "Signature: POST /connect/token".
            return _oauth(405, {"error": "invalid_request"})
        return self._login(request)

    def expire_tokens(self) -> None:
        """Tokens live in the API sandbox's store; nothing to do here."""
