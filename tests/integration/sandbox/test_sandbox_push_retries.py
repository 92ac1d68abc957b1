"""The sandbox's DocPlanner push retries: "pushed only once" [OAS] or after 1, 5, 15 min [G]."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.sandbox.push_retry import SCHEDULES

SCALE = 0.005  # 1, 5, 15 minutes -> 0.3 s, 1.5 s, 4.5 s


@pytest.fixture
def guide(receiver: Any) -> Iterator[DocPlannerSandbox]:
    """A push client whose failed pushes are retried on the guide's schedule, time-scaled."""
    client = DocPlannerClient("push-id", "push-secret", push_url=receiver.url, push_token="tok")
    with DocPlannerSandbox(
        clients=[client], push_retries="guide", push_retry_scale=SCALE
    ) as sandbox:
        yield sandbox


def test_the_default_pushes_only_once(dp: DocPlannerSandbox, receiver: Any) -> None:
    """Default "once": a 503 push is not retried; it waits for release as failed."""
    notes = dp.enqueue("push-id", 1)
    receiver.statuses = [503]
    assert dp.push("push-id", notes) == [503]
    assert dp.pusher.retries.pending() == 0 and dp.pusher.retries.attempts == []
    assert dp.failed_pushes("push-id") == notes and len(receiver.received) == 1


def test_a_failed_push_is_retried_until_a_2xx(guide: DocPlannerSandbox, receiver: Any) -> None:
    """503, then retries after 1 and 5 (scaled) minutes: 500, 204; pushed, not failed."""
    notes = guide.enqueue("push-id", 1)
    receiver.statuses = [503, 500, 204]
    assert guide.push("push-id", notes) == [503]
    assert guide.failed_pushes("push-id") == [], "being retried, not buried"
    assert guide.pusher.retries.wait_idle(60)
    attempts = guide.pusher.retries.attempts
    assert [(a.number, a.delivered) for a in attempts] == [(1, False), (2, True)]
    delays = [delay * SCALE for delay in SCHEDULES["guide"]]
    assert attempts[0].after >= delays[0] and attempts[1].after >= delays[1]
    assert receiver.bodies() == notes * 3
    assert guide.pushed("push-id") == notes and guide.failed_pushes("push-id") == []


def test_a_push_failing_three_retries_is_buried_then_released_once(
    guide: DocPlannerSandbox, receiver: Any
) -> None:
    """Four failures (push + 3 retries): failed; release re-dispatches it, without retries."""
    notes = guide.enqueue("push-id", 2)
    receiver.statuses = [204, 500, 500, 503, 502, 500]
    assert guide.push("push-id", notes) == [204, 500]
    assert guide.pusher.retries.wait_idle(60)
    attempts = guide.pusher.retries.attempts
    assert [(a.number, a.delivered) for a in attempts] == [(1, False), (2, False), (3, False)]
    assert attempts[2].after >= SCHEDULES["guide"][2] * SCALE
    assert guide.failed_pushes("push-id") == [notes[1]]
    buried = guide.pusher.take_failed("push-id")  # what a 204 release does, then re-sends
    assert buried == [notes[1]]
    guide.pusher.redispatch("push-id", receiver.url, "tok", buried)
    assert guide.pusher.retries.pending() == 0, "a re-dispatch is not retried"
    assert guide.failed_pushes("push-id") == [notes[1]]
    assert receiver.bodies() == [notes[0], *[notes[1]] * 5]


def test_an_unknown_retry_schedule_is_refused() -> None:
    """push_retries names one of the two documented behaviours."""
    with pytest.raises(ValueError, match="push_retries"):
        DocPlannerSandbox(push_retries="twice")
