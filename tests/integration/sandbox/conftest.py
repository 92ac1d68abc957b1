"""Fixtures for the sandbox tests: running simulators, an HTTP session, a push receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from daemon.sandbox import (
    DocPlannerClient,
    DocPlannerSandbox,
    MyInvoisClient,
    MyInvoisSandbox,
    SandboxClock,
)
from tests.push_endpoint import Receiver, receiver

__all__ = ["Receiver", "receiver"]  # the push endpoint fixture, shared with tests/e2e

DP_ACCEPT = "application/vnd.docplanner+json; charset=UTF-8, application/vnd.error+docplanner+json"


@pytest.fixture
def clock() -> SandboxClock:
    return SandboxClock()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def dp(clock: SandboxClock, receiver: Receiver) -> Iterator[DocPlannerSandbox]:
    """A DocPlanner sandbox with a pull-only client and a push-enabled one."""
    clients = [
        DocPlannerClient("pl-id", "pl-secret"),
        DocPlannerClient("push-id", "push-secret", push_url=receiver.url, push_token="tok-123"),
    ]
    with DocPlannerSandbox(clients=clients, clock=clock, requests_per_hour=50) as sandbox:
        yield sandbox


@pytest.fixture
def mi(clock: SandboxClock) -> Iterator[MyInvoisSandbox]:
    """A MyInvois sandbox with a taxpayer and an intermediary client."""
    clients = [
        MyInvoisClient("acme-id", "acme-secret"),
        MyInvoisClient("agent-id", "agent-secret", on_behalf_of="C1234567890"),
    ]
    with MyInvoisSandbox(clients=clients, clock=clock, requests_per_minute=1000) as sandbox:
        yield sandbox


class DocPlannerApi:
    """A thin client over a session, so tests read as protocol steps."""

    def __init__(self, sandbox: DocPlannerSandbox, session: requests.Session) -> None:
        self.sandbox, self.session = sandbox, session

    def token(self, client_id: str = "pl-id", secret: str = "pl-secret") -> str:  # noqa: S107
        response = self.session.post(
            f"{self.sandbox.base_url}/oauth/v2/token",
            auth=(client_id, secret),
            data={"grant_type": "client_credentials", "scope": "integration"},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def get(self, path: str, token: str | None, **params: Any) -> requests.Response:
        headers = {"Accept": DP_ACCEPT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{self.sandbox.base_url}/api/v3/integration{path}"
        return self.session.get(url, headers=headers, params=params, timeout=10)

    def pull(self, token: str, limit: int) -> requests.Response:
        return self.get("/notifications/multiple", token, limit=limit)

    def release(self, token: str) -> requests.Response:
        headers = {"Accept": "application/vnd.error+docplanner+json"}
        headers["Authorization"] = f"Bearer {token}"
        url = f"{self.sandbox.base_url}/api/v3/integration/notifications/release"
        return self.session.post(url, headers=headers, timeout=10)


class MyInvoisApi:
    def __init__(self, sandbox: MyInvoisSandbox, session: requests.Session) -> None:
        self.sandbox, self.session = sandbox, session

    def login(
        self,
        client_id: str = "acme-id",
        secret: str = "acme-secret",  # noqa: S107
        onbehalfof: str | None = None,
        **form: str,
    ) -> requests.Response:
        """``POST /connect/token`` on the identity service (form body credentials)."""
        headers = {"onbehalfof": onbehalfof} if onbehalfof else {}
        data = {
            "client_id": client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "scope": "InvoicingAPI",
            **form,
        }
        data = {key: value for key, value in data.items() if value}
        url = f"{self.sandbox.identity_url}/connect/token"
        return self.session.post(url, data=data, headers=headers, timeout=10)

    def token(
        self,
        client_id: str = "acme-id",
        secret: str = "acme-secret",  # noqa: S107
        onbehalfof: str | None = None,
    ) -> str:
        response = self.login(client_id, secret, onbehalfof)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def page(
        self, token: str | None, headers: dict[str, str] | None = None, **params: Any
    ) -> requests.Response:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        url = f"{self.sandbox.base_url}/api/v1.0/notifications/taxpayer"
        return self.session.get(url, headers=sent, params=params, timeout=10)


@pytest.fixture
def dp_api(dp: DocPlannerSandbox, http: requests.Session) -> DocPlannerApi:
    return DocPlannerApi(dp, http)


@pytest.fixture
def mi_api(mi: MyInvoisSandbox, http: requests.Session) -> MyInvoisApi:
    return MyInvoisApi(mi, http)
