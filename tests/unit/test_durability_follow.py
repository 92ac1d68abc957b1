"""The replica wait of durability = "auto": the replicas the master has connected."""

from __future__ import annotations

from typing import Any

from daemon.sink.durability import Wait, online_replicas


def info(*states: str) -> dict[str, Any]:
    """An ``INFO replication`` reply as redis-py parses it, one replica per state."""
    reply: dict[str, Any] = {"role": "master", "connected_slaves": len(states)}
    for n, state in enumerate(states):
        reply[f"slave{n}"] = {"ip": "127.0.0.1", "port": 7000 + n, "state": state, "lag": 0}
    return reply


def test_only_online_replicas_count() -> None:
    """A replica still taking its first sync is listed but not online: WAIT cannot count it."""
    assert online_replicas(info("online", "wait_bgsave", "online")) == 2
    assert online_replicas(info()) == 0
    assert online_replicas(None) == 0


def test_every_connected_replica_must_acknowledge() -> None:
    """Two online, one acknowledged: short; both: released."""
    wait = Wait(2, follow=True)
    assert wait.commands() == [("INFO", "replication"), ("WAIT", 2, 1000)]
    assert wait.shortfall([info("online", "online"), 1]) == "WAIT: 1/2 replicas acknowledged"
    assert wait.shortfall([info("online", "online"), 2]) is None


def test_a_master_left_without_replicas_publishes_alone() -> None:
    """The WAIT asked for the replica it had, but the master has none now: released."""
    wait = Wait(1, follow=True)
    assert wait.shortfall([info(), 0]) is None
    assert wait.required([info()]) == 0


def test_min_replicas_and_the_cap() -> None:
    """min_replicas holds records while too few are connected; wait_replicas caps the wait."""
    assert "min_replicas is 1" in (
        Wait(0, follow=True, min_replicas=1).shortfall([info(), 0]) or ""
    )
    capped = Wait(1, follow=True, cap=1)
    assert capped.required([info("online", "online", "online")]) == 1
    assert capped.shortfall([info("online", "online", "online"), 1]) is None


def test_a_replica_that_joined_is_waited_for_from_the_next_call() -> None:
    """The WAIT counted none, the INFO shows one: short now, and the next call waits for it."""
    wait = Wait(0, follow=True)
    assert wait.shortfall([info("online"), 0]) == "WAIT: 0/1 replicas acknowledged"
    assert wait.required([info("online")]) == 1
