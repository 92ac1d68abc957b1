"""``drainer check-config --connect``: what the config reaches, checked before the first start.

One line per check on stderr, ``ok`` or ``FAIL``, never a secret:

- Redis: reachable and authenticated (``PING``), its version and replicas per master, the
  ``maxmemory-policy`` (an evicting one loses de-duplication keys), and the durability wait
  that would be in force (``WAIT``/``WAITAOF``, as ``drainer run`` decides it).
- Per DocPlanner account: a token fetched. Nothing is pulled: a pull is destructive.
- Per MyInvois account: a token (with ``onbehalfof`` for an intermediary) and one small
  read-only page (``pageSize=1`` over the last hour).

Exit 0 when every check passed, else 1 with a last line naming what failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from prometheus_client import CollectorRegistry
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from daemon.errors import (
    EXIT_FATAL,
    EXIT_OK,
    AuthError,
    BadRequestError,
    ForbiddenError,
    RedisCommandError,
    UpstreamError,
)
from daemon.metrics import Metrics
from daemon.settings import DocPlannerAccount, MyInvoisAccount, Settings
from daemon.settings.redis_url import redact_url
from daemon.sink.connect import connect, describe
from daemon.sink.durability import Policy, node_facts, resolve
from daemon.sink.memory import evicting_policy
from daemon.sources.docplanner.api import DocPlannerApi
from daemon.sources.http import UpstreamClient
from daemon.sources.myinvois.api import parse_page
from daemon.sources.myinvois.poll import build_api

REDIS_TIMEOUT = 5.0
PAGE_WINDOW = timedelta(hours=1)  # the small read-only page: pageSize=1 over the last hour


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it passed, what was seen."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def run_checks(settings: Settings, out: Callable[[str], None] | None = None) -> int:
    """Run every check, print one line each (secrets scrubbed); 0 if all passed, else 1."""
    write = out or (lambda line: print(line, file=sys.stderr, flush=True))
    secrets = [s for s in settings.secret_values() if s]
    if settings.redis.password is not None:
        secrets.append(settings.redis.password.get_secret_value())
    failed: list[str] = []
    for check in _all(settings):
        line = check.line()
        for secret in secrets:
            line = line.replace(secret, "***")
        write(line)
        if not check.ok and check.name not in failed:
            failed.append(check.name)
    if failed:
        write(f"drainer: check-config --connect: {len(failed)} failed: {', '.join(failed)}")
        return EXIT_FATAL
    return EXIT_OK


def _all(settings: Settings) -> Iterator[Check]:
    yield from redis_checks(settings)
    accounts = [("docplanner", a.name) for a in settings.docplanner]
    metrics = Metrics(
        CollectorRegistry(), accounts + [("myinvois", a.name) for a in settings.myinvois]
    )
    for docplanner in settings.docplanner:
        yield docplanner_check(docplanner, metrics)
    for myinvois in settings.myinvois:
        yield myinvois_check(myinvois, metrics)


# --- Redis -------------------------------------------------------------------------------


def redis_checks(settings: Settings) -> Iterator[Check]:
    """Reachable and authenticated, then per master: version, eviction, durability."""
    where = redact_url(settings.redis.url)
    try:
        client: Any = connect(settings.redis, timeout=REDIS_TIMEOUT)
        client.ping()
    except redis.AuthenticationError:
        yield Check(
            "redis", False, f"{where}: authentication refused: {_credentials_hint(settings)}"
        )
        return
    except redis.ResponseError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            yield Check(
                "redis", False, f"{where}: {str(exc).split()[0]}: {_credentials_hint(settings)}"
            )
        else:
            yield Check("redis", False, f"{where}: PING refused: {exc}")
        return
    except (redis.RedisError, RedisClusterException, OSError) as exc:
        yield Check("redis", False, f"{where}: not reachable: {type(exc).__name__}: {exc}")
        return
    try:
        yield Check("redis", True, f"{where}: reachable, authenticated (PING answered)")
        yield from _per_master(settings, client)
    finally:
        client.close()


def _credentials_hint(settings: Settings) -> str:
    source = "redis.password_file" if settings.redis.password is not None else "the url's password"
    return f"check {source} (and the user, with ACLs)"


def _per_master(settings: Settings, client: Any) -> Iterator[Check]:
    try:
        if isinstance(client, RedisCluster):
            primaries = client.get_primaries()  # type: ignore[no-untyped-call,unused-ignore]
            masters = [(f" {n.name}", client.get_redis_connection(n)) for n in primaries]
        else:
            masters = [("", client)]
        topology: Any = describe(client)
        facts = [(name, node, node_facts(node)) for name, node in masters]
    except (redis.RedisError, RedisClusterException) as exc:
        yield Check("redis", False, f"INFO refused: {type(exc).__name__}: {exc}")
        return
    for name, _node, fact in facts:
        yield Check(
            f"redis server{name}",
            True,
            f"Redis {fact.version} ({topology}), {fact.connected_replicas} connected replicas, "
            f"appendonly {'yes' if fact.aof_enabled else 'no'}",
        )
    policy = evicting_policy(client)
    if policy is None:
        yield Check("redis eviction", True, "maxmemory-policy noeviction (or no maxmemory)")
    elif settings.redis.allow_eviction:
        yield Check("redis eviction", True, f"maxmemory-policy {policy}, accepted (allow_eviction)")
    else:
        yield Check(
            "redis eviction",
            False,
            f"maxmemory-policy {policy} can evict de-duplication keys: set noeviction "
            "(or redis.allow_eviction = true); drainer run refuses to start",
        )
    wanted = Policy.from_settings(settings.redis)
    for name, _node, fact in facts:
        try:
            wait = resolve(wanted, topology, fact)
        except RedisCommandError as exc:
            yield Check(f"redis durability{name}", False, str(exc))
            continue
        weak = "" if wait.active or wanted.mode == "none" else ": no replica acknowledges writes"
        yield Check(
            f"redis durability{name}",
            True,
            f"durability = {wanted.mode!r}: in force {wait.describe()}{weak}",
        )


# --- upstreams ---------------------------------------------------------------------------


def docplanner_check(account: DocPlannerAccount, metrics: Metrics) -> Check:
    """A token fetched with the account's client; no pull (it would pop notifications)."""
    name = f"docplanner {account.name}"
    api = DocPlannerApi(account, UpstreamClient("docplanner", account.name, metrics))
    try:
        api.tokens.get()
    except AuthError as exc:
        return Check(name, False, f"{_tail(exc)}: check client_id and client_secret")
    except UpstreamError as exc:
        return Check(name, False, f"{api.token_url}: {_tail(exc)}")
    finally:
        api.http.close()
    return Check(name, True, f"token fetched from {api.token_url}; nothing pulled")


def myinvois_check(account: MyInvoisAccount, metrics: Metrics) -> Check:
    """A token (``onbehalfof`` for an intermediary) and one page: pageSize=1, the last hour."""
    name = f"myinvois {account.name}"
    behalf = f" with onbehalfof {account.on_behalf_of}" if account.on_behalf_of else ""
    api = build_api(account, metrics)
    try:
        try:
            api.tokens.get()
        except AuthError as exc:
            hint = "check client_id and client_secret"
            if account.on_behalf_of and "invalid_grant" in str(exc):
                hint = f"the client may not act for taxpayer {account.on_behalf_of} (on_behalf_of)"
            elif account.on_behalf_of:
                hint += f", and on_behalf_of {account.on_behalf_of}"
            return Check(name, False, f"login{behalf}: {_tail(exc)}: {hint}")
        now = datetime.now(UTC).replace(microsecond=0)
        body = api.get_page(now - PAGE_WINDOW, now - timedelta(seconds=5), 1, 1)
        items, _ = parse_page(body, 1)
    except ForbiddenError:
        return Check(name, False, f"token{behalf} fetched, but the notifications page answered 403")
    except BadRequestError as exc:
        return Check(name, False, f"token{behalf} fetched, but the page was refused: {_tail(exc)}")
    except UpstreamError as exc:
        return Check(name, False, _tail(exc))
    finally:
        api.http.close()
    return Check(
        name,
        True,
        f"token fetched{behalf}; one page read (pageSize=1, last hour): "
        f"{len(items)} notification{'' if len(items) == 1 else 's'}",
    )


def _tail(exc: Exception) -> str:
    """The message without the ``<source> <account>: `` prefix the check line already has."""
    text = str(exc)
    head, sep, rest = text.partition(": ")
    return rest if sep and len(head.split()) == 2 else text
