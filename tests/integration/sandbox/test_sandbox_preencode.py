"""The benchmark's pre-encoding DocPlanner sandbox serves the same bytes as the plain one."""

from __future__ import annotations

import requests

from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.sandbox.events import NotificationFactory

BASE = "/api/v3/integration/notifications"
NOTIFICATIONS = NotificationFactory(7).batch(150, 1_790_000_000.0)


def _pull_all(preencode: bool) -> tuple[list[bytes], int]:
    client = DocPlannerClient(client_id="id", client_secret="secret")
    with (
        DocPlannerSandbox(clients=[client], seed=7, preencode=preencode) as dp,
        requests.Session() as session,
    ):
        dp.enqueue_raw("id", NOTIFICATIONS)
        token = session.post(
            f"{dp.base_url}/oauth/v2/token",
            auth=("id", "secret"),
            data={"grant_type": "client_credentials", "scope": "integration"},
            timeout=5,
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.docplanner+json"}
        bodies, status = [], 200
        while status == 200:
            response = session.get(
                f"{dp.base_url}{BASE}/multiple?limit=100", headers=headers, timeout=5
            )
            status = response.status_code
            if status == 200:
                bodies.append(response.content)
        return bodies, len(dp.handed_out("id"))


def test_preencoded_pull_bodies_equal_the_encoded_ones() -> None:
    """preencode=True changes only the cost: the same pull bodies, the same bookkeeping."""
    assert _pull_all(preencode=True) == _pull_all(preencode=False)
    bodies, handed_out = _pull_all(preencode=True)
    assert len(bodies) == 2 and handed_out == 150
    assert bodies[1].endswith(b'],"remaining":0}')
