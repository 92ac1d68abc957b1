"""Accounts that share an upstream client (SPEC §2: a budget belongs to the upstream's unit
of limiting): a DocPlanner OAuth client serves one account per domain; MyInvois accounts
sharing a Client ID share its budgets, so their budget values must agree.

Errors are one line naming the key and both accounts, never a value that may be secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from daemon.settings.model import DocPlannerAccount, MyInvoisAccount


def _host(url: str) -> str:
    return (urlsplit(url).netloc or url).lower()


def one_account_per_docplanner_client(accounts: Sequence[DocPlannerAccount]) -> None:
    """DocPlanner budgets (and its one queue) belong to the OAuth client on its domain."""
    seen: dict[tuple[str, str], str] = {}
    for index, account in enumerate(accounts):
        key = (_host(account.base_url).removeprefix("www."), account.client_id)
        other = seen.setdefault(key, account.name)
        if other != account.name:
            raise ValueError(
                f"docplanner[{index}].client_id: accounts {other!r} and {account.name!r} use the"
                f" same client on {key[0]} (one queue, one budget): keep one account"
            )


def myinvois_clients_agree(accounts: Sequence[MyInvoisAccount]) -> None:
    """Accounts sharing a Client ID (on one identity host) share its budgets: values agree."""
    first: dict[tuple[str, str], MyInvoisAccount] = {}
    for index, account in enumerate(accounts):
        other = first.setdefault((_host(account.token_base), account.client_id), account)
        for key in ("requests_per_minute", "logins_per_minute"):
            mine, theirs = getattr(account, key), getattr(other, key)
            if mine != theirs:
                raise ValueError(
                    f"myinvois[{index}].{key}: accounts {other.name!r} ({theirs}) and"
                    f" {account.name!r} ({mine}) share a client_id, so they share one budget:"
                    " set the same value"
                )
