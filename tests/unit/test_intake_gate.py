"""The intake's header-time rules in isolation: source, allowlist, auth order, limits, settings."""

from __future__ import annotations

import hmac
import ipaddress
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from daemon.errors import ConfigError
from daemon.server import apps
from daemon.server.allow import PushPolicies, parse_published
from daemon.server.apps import Router
from daemon.server.descriptors import descriptors_needed
from daemon.server.gate import FailureLimiter, Gate, Head, push_source
from daemon.settings import DocPlannerAccount, load_settings
from daemon.sources.docplanner.push import PushReceiver

TOKEN = "a-long-enough-push-token"
NETS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.5/32")]


def account(**extra: object) -> DocPlannerAccount:
    fields: dict[str, object] = {
        "name": "pl",
        "base_url": "https://www.znanylekarz.pl",
        "client_id": "id",
        "client_secret": "secret-value",
        "mode": "push",
        "push_token": TOKEN,
        **extra,
    }
    return DocPlannerAccount.model_validate(fields)


def receiver() -> PushReceiver:
    return PushReceiver(
        "pl",
        TOKEN,
        None,
        None,
        "s",
        "d",
        threading.Event(),  # type: ignore[arg-type]
    )


def head(path: str, method: str = "POST", peer: str = "192.0.2.1", **headers: str) -> Head:
    return Head(method, path, headers, peer, 0, False)


@pytest.mark.parametrize(
    ("peer", "forwarded", "source"),
    [
        ("192.0.2.1", "198.51.100.7", "192.0.2.1"),  # not a trusted proxy: header ignored
        ("127.0.0.5", None, "127.0.0.5"),
        ("127.0.0.5", "198.51.100.7", "198.51.100.7"),
        ("127.0.0.5", "203.0.113.1, 198.51.100.7", "198.51.100.7"),  # rightmost untrusted
        ("127.0.0.5", "198.51.100.7, 10.1.2.3", "198.51.100.7"),  # trusted hops skipped
        ("127.0.0.5", "10.1.2.3, 127.0.0.5", "127.0.0.5"),  # all trusted: the nearest
        ("::ffff:127.0.0.5", "198.51.100.7", "198.51.100.7"),  # IPv4-mapped peer
    ],
)
def test_push_source_is_the_rightmost_untrusted_forwarded_address(
    peer: str, forwarded: str | None, source: str
) -> None:
    """X-Forwarded-For counts only from a trusted proxy, read from the right."""
    assert push_source(peer, forwarded, NETS) == source


def test_failure_limiter_refills_per_minute_and_is_per_source() -> None:
    """5 failures a minute: the sixth source attempt is blocked until a token refills."""
    now = [0.0]
    limiter = FailureLimiter(5, clock=lambda: now[0])
    for _ in range(5):
        assert not limiter.blocked("a")
        limiter.failed("a")
    assert limiter.blocked("a") and not limiter.blocked("b")
    now[0] += 12.0  # one token per 12 s
    assert not limiter.blocked("a")


def test_the_decoy_compares_the_given_token_first_like_a_real_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """compare_digest runs over its second argument: the stored token goes second, always."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(apps.hmac, "compare_digest", spy)
    monkeypatch.setattr("daemon.sources.docplanner.push.hmac.compare_digest", spy)
    router = Router(CollectorRegistry(), lambda: True, lambda: (True, {}), {"pl": receiver()})
    given = "g" * 16384
    assert not router.authorized("pl", given)
    assert not router.authorized("ghost", given)
    assert [a for a, _ in calls] == [given.encode()] * 2
    assert [len(b) for _, b in calls] == [len(TOKEN), 32]


def gate(accounts: list[DocPlannerAccount], push_only: bool = False) -> Gate:
    policies = PushPolicies(accounts)
    push = {a.name: receiver() for a in accounts}
    router = Router(CollectorRegistry(), lambda: True, lambda: (True, {}), push)
    router.header_of = policies.header_of
    return Gate(router, policies.allowed, NETS, FailureLimiter(100), push_only)


def test_gate_verdicts_by_route_method_and_body() -> None:
    """Routes without a body refuse one; other paths 404; the push-only listener 404s."""
    front = gate([account()])
    assert front.check(head("/metrics", "GET")) == front.check(head("/healthz", "HEAD")) is None
    refusal = front.check(Head("GET", "/readyz", {}, "p", 0, True))
    assert refusal is not None and refusal.code == 413
    refusal = front.check(head("/metrics", "POST"))
    assert refusal is not None and (refusal.code, refusal.allow) == (405, "GET, HEAD")
    refusal = front.check(head("/nope", "GET"))
    assert refusal is not None and refusal.code == 404
    refusal = gate([account()], push_only=True).check(head("/healthz", "GET"))
    assert refusal is not None and refusal.code == 404


def test_gate_checks_the_accounts_own_header_and_allowlist() -> None:
    """push_header and push_allow_from decide; an unknown account is judged like any other."""
    front = gate([account(push_header="X-Api-Key", push_allow_from=["198.51.100.0/24"])])
    ok = head("/push/docplanner/pl", peer="198.51.100.9", X_API_KEY=TOKEN)
    assert front.check(ok) is None
    wrong_header = head("/push/docplanner/pl", peer="198.51.100.9", X_DRAINER_TOKEN=TOKEN)
    assert getattr(front.check(wrong_header), "code", None) == 401
    outside = head("/push/docplanner/pl", peer="192.0.2.1", X_API_KEY=TOKEN)
    assert getattr(front.check(outside), "code", None) == 403
    ghost_outside = head("/push/docplanner/ghost", peer="192.0.2.1", X_API_KEY=TOKEN)
    assert getattr(front.check(ghost_outside), "code", None) == 403
    ghost_inside = head("/push/docplanner/ghost", peer="198.51.100.9", X_API_KEY=TOKEN)
    assert getattr(front.check(ghost_inside), "code", None) == 401


def test_published_list_shape() -> None:
    """{"API": [...]} of addresses or CIDRs; anything else is refused (the last list stays)."""
    assert parse_published({"API": ["192.0.2.1", "198.51.100.0/24"]})[1].num_addresses == 256
    for bad in ({"API": []}, {"api": ["192.0.2.1"]}, ["192.0.2.1"], {"API": ["nope"]}):
        with pytest.raises(ValueError):
            parse_published(bad)


MINIMAL = """
[[docplanner]]
name = "pl"
base_url = "https://www.znanylekarz.pl"
client_id = "id"
client_secret = "s3cr3t-value"
mode = "push"
"""


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('push_token = "fifteen-chars!!"\n', "docplanner"),
        ('push_token = "long-enough-token"\npush_header = "X_Token"\n', "push_header"),
        ('push_token = "long-enough-token"\npush_header = "Content-Length"\n', "push_header"),
        ('push_token = "long-enough-token"\npush_allow_from = ["10.0.0.0/33"]\n', "push_allow"),
        ('push_token = "long-enough-token"\n[server]\ntrusted_proxies = ["x"]\n', "trusted"),
    ],
    ids=["short-token", "underscore-header", "framing-header", "bad-cidr", "bad-proxy"],
)
def test_intake_settings_errors_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    """A short token, an unusable header name, a bad CIDR: one-line config errors."""
    path = tmp_path / "drainer.toml"
    path.write_text(MINIMAL + extra)
    with pytest.raises(ConfigError) as raised:
        load_settings(path, {})
    message = str(raised.value)
    assert key in message and "\n" not in message
    assert "fifteen-chars" not in message


def test_descriptor_need_covers_every_listener_and_the_daemon() -> None:
    """Two listeners of 1000 and ten accounts need 2000 + the daemon's reserve."""
    assert descriptors_needed(1000, 2, 10) == 2000 + 128 + 40
