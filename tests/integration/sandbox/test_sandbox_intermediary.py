"""The MyInvois sandbox models an intermediary: taxpayers by (client_id, TIN), limits per client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from daemon.sandbox import MyInvoisClient, MyInvoisSandbox, SandboxClock

AGENT, SECRET = "agent-id", "agent-secret"
TINS = ("C1000000001", "C1000000002", "C1000000003")


@pytest.fixture
def agent(clock: SandboxClock) -> Iterator[MyInvoisSandbox]:
    clients = [MyInvoisClient(AGENT, SECRET, on_behalf_of=tin) for tin in TINS]
    with MyInvoisSandbox(clients, clock=clock, requests_per_minute=3, logins_per_minute=4) as mi:
        yield mi


def login(mi: MyInvoisSandbox, http: requests.Session, tin: str | None) -> requests.Response:
    data = {"client_id": AGENT, "client_secret": SECRET, "grant_type": "client_credentials"}
    headers = {"onbehalfof": tin} if tin else {}
    return http.post(f"{mi.identity_url}/connect/token", data=data, headers=headers, timeout=10)


def page(mi: MyInvoisSandbox, http: requests.Session, token: str) -> requests.Response:
    url = f"{mi.base_url}/api/v1.0/notifications/taxpayer"
    return http.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def token(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_each_token_reads_the_taxpayer_named_at_login(
    agent: MyInvoisSandbox, http: requests.Session
) -> None:
    """One client, three TINs: a token reads only the notifications of its onbehalfof TIN."""
    added = {tin: agent.add_notifications(AGENT, 3, tin=tin) for tin in TINS[:2]}
    for tin in TINS[:2]:
        result = page(agent, http, token(login(agent, http, tin))).json()["result"]
        assert {r["notificationId"] for r in result} == {r["notificationId"] for r in added[tin]}
    assert agent.logins(AGENT, TINS[0]) == 1 and agent.logins(AGENT, TINS[2]) == 0
    with pytest.raises(KeyError, match="name one"):
        agent.notifications(AGENT)  # three taxpayers: the TIN is needed
    stranger = login(agent, http, "C9999999999")
    assert stranger.status_code == 400 and stranger.json()["error"] == "invalid_grant"


def test_notifications_limit_is_per_client_across_taxpayers(
    agent: MyInvoisSandbox, http: requests.Session
) -> None:
    """Three pages of two taxpayers spend the client's 3 a minute: the fourth gets 429."""
    tokens = [token(login(agent, http, tin)) for tin in TINS[:2]]
    answers = [page(agent, http, tokens[n % 2]) for n in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    limited: Any = answers[-1]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-Rate-Limit-Limit"] == "3"
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"
    assert limited.headers["X-Rate-Limit-Reset"].endswith("Z")
    assert limited.json()["error"]["errorCode"] == "TooManyRequests"


def test_login_limit_is_per_client_across_taxpayers(
    agent: MyInvoisSandbox, http: requests.Session
) -> None:
    """Logins for different TINs count against one client's login limit (4 here)."""
    answers = [login(agent, http, TINS[n % 3]) for n in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    assert answers[-1].headers["X-Rate-Limit-Limit"] == "4"
    assert sum(agent.logins(AGENT, tin) for tin in TINS) == 4
