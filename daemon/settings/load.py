"""Build the one ``Settings`` object from the TOML file, the environment and secret files.

Every problem becomes a :class:`ConfigError` whose message is one line naming the file
and the key, and never the value (it may be a secret).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from daemon.errors import ConfigError
from daemon.settings.compact import CompactError, expand
from daemon.settings.compact import blame as compact_blame
from daemon.settings.env import Override, apply, blame, env_overrides
from daemon.settings.model import Settings
from daemon.settings.network import MIN_PUSH_TOKEN
from daemon.settings.redis_url import url_password

DEFAULT_CONFIG_PATH = Path("/etc/notification-drainer/drainer.toml")


def config_path(cli_path: str | None, environ: Mapping[str, str]) -> Path:
    """``--config``, else ``$DRAINER_CONFIG``, else the default path."""
    if cli_path:
        return Path(cli_path)
    if environ.get("DRAINER_CONFIG"):
        return Path(environ["DRAINER_CONFIG"])
    return DEFAULT_CONFIG_PATH


def load_settings(
    path: Path, environ: Mapping[str, str] | None = None, *, secrets: bool = True
) -> Settings:
    """Read, validate and resolve the configuration, or raise a one-line ConfigError.

    ``secrets=False`` (``drainer status``) reads no upstream secret; only the Redis
    ``password_file``, and only if it is readable, since reading Redis needs it.
    """
    environ = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if not isinstance(raw, dict):  # pragma: no cover - tomllib always returns a table
        raise ConfigError(f"{path}: not a TOML table")
    try:
        raw, origins = expand(raw)  # [[myinvois_client]] -> one [[myinvois]] per taxpayer
    except CompactError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    overrides = env_overrides(raw, environ, path)
    try:
        settings = Settings(**apply(raw, overrides))
    except ValidationError as exc:
        raise ConfigError(compact_blame(_blamed(exc, path, raw, overrides), origins)) from None
    if not secrets:
        try:
            return _with_redis_password(settings, path, environ)
        except ConfigError:
            return settings  # Redis will answer NOAUTH, which status reports
    try:
        settings = _resolve_secret_files(settings, path, environ)
    except ConfigError as exc:
        raise ConfigError(compact_blame(str(exc), origins)) from None
    return _with_redis_password(settings, path, environ)


def _blamed(
    exc: ValidationError, path: Path, raw: dict[str, Any], overrides: list[Override]
) -> str:
    """The first problem, on the environment variable that set it, else on the file."""
    loc = tuple(exc.errors(include_input=False, include_url=False)[0]["loc"])
    override, alone = blame(loc, overrides, raw)
    if override is None:
        return f"{path}: {_first_error(exc)}"
    if alone:
        return f"environment {override.variable}: {_first_error(exc)}"
    return f"{path} with environment {override.variable}: {_first_error(exc)}"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_input=False, include_url=False)[0]
    key = ""
    for part in error["loc"]:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    extra = len(exc.errors()) - 1
    more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
    return f"{key}: {message}{more}" if key else f"{message}{more}"


# The shipped unit loads the whole credentials directory (LoadCredential=drainer:<dir>, systemd
# >= 251), and systemd names each of its files ``drainer_<file name>`` (systemd.exec(5)).
CREDENTIAL_PREFIX = "drainer_"


def secret_path(name: Path, environ: Mapping[str, str]) -> Path:
    """A ``*_file`` name: absolute as is, else inside ``$CREDENTIALS_DIRECTORY`` when set:
    ``NAME`` itself, or, when only that exists, ``drainer_NAME`` (a loaded directory)."""
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if not name.is_absolute() and credentials:
        direct = Path(credentials) / name
        loaded = Path(credentials) / f"{CREDENTIAL_PREFIX}{name}"
        if len(name.parts) == 1 and not direct.exists() and loaded.exists():
            return loaded
        return direct
    return name


def _read_secret(path: Path, key: str, name: Path, environ: Mapping[str, str]) -> SecretStr:
    secret_file = secret_path(name, environ)
    try:
        secret = secret_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{path}: {key}: cannot read {secret_file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {key}: {secret_file} is not UTF-8 text") from None
    if not secret:
        raise ConfigError(f"{path}: {key}: file is empty")
    return SecretStr(secret)


def _resolve_secret_files(settings: Settings, path: Path, environ: Mapping[str, str]) -> Settings:
    """Read the accounts' ``*_file`` secrets: ``client_secret_file`` and ``push_token_file``
    (relative names live in ``$CREDENTIALS_DIRECTORY``)."""
    resolved: dict[str, Any] = {"docplanner": [], "myinvois": []}
    kinds: dict[str, list[Any]] = {"docplanner": settings.docplanner, "myinvois": settings.myinvois}
    for kind, accounts in kinds.items():
        for index, account in enumerate(accounts):
            update: dict[str, SecretStr] = {}
            if account.client_secret_file is not None:
                key = f"{kind}[{index}].client_secret_file"
                update["client_secret"] = _read_secret(
                    path, key, account.client_secret_file, environ
                )
            token_file = getattr(account, "push_token_file", None)
            if token_file is not None:
                key = f"{kind}[{index}].push_token_file"
                update["push_token"] = _read_secret(path, key, token_file, environ)
                if len(update["push_token"].get_secret_value()) < MIN_PUSH_TOKEN:
                    raise ConfigError(
                        f"{path}: {key}: shorter than {MIN_PUSH_TOKEN} characters, easy to guess"
                    )
            resolved[kind].append(account.model_copy(update=update) if update else account)
    return settings.model_copy(update=resolved)


def _with_redis_password(settings: Settings, path: Path, environ: Mapping[str, str]) -> Settings:
    """Read ``[redis] password_file``, when set, into ``settings.redis.password``."""
    if settings.redis.password_file is None:
        return settings
    password = _read_secret(path, "redis.password_file", settings.redis.password_file, environ)
    return settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"password": password})}
    )


def security_warnings(settings: Settings, path: Path, environ: Mapping[str, str]) -> list[str]:
    """Risky but valid settings, one line each (never a value): logged at start."""
    found: list[str] = []
    files: list[tuple[str, Path]] = []
    inline: list[str] = []
    if settings.redis.password_file is not None:
        files.append(("redis.password_file", settings.redis.password_file))
    if url_password(settings.redis.url):
        inline.append("redis.url")
    kinds: dict[str, list[Any]] = {"docplanner": settings.docplanner, "myinvois": settings.myinvois}
    for kind, accounts in kinds.items():
        for index, account in enumerate(accounts):
            key = f"{kind}[{index}]"
            if account.client_secret_file is not None:
                files.append((f"{key}.client_secret_file", account.client_secret_file))
            else:
                inline.append(f"{key}.client_secret")
            token_file = getattr(account, "push_token_file", None)
            if token_file is not None:
                files.append((f"{key}.push_token_file", token_file))
            elif getattr(account, "push_token", None) is not None:
                inline.append(f"{key}.push_token")
            identity = getattr(account, "identity_url", None)
            if account.base_url.startswith("http://"):
                what = "the bearer token" if identity else "the client secret"
                found.append(f"{key}.base_url: http:// sends {what} in cleartext")
            if identity is not None and identity.startswith("http://"):
                found.append(f"{key}.identity_url: http:// sends the client secret in cleartext")
    for key, name in files:
        secret_file = secret_path(name, environ)
        if _world_readable(secret_file):
            found.append(f"{key}: {secret_file} is readable by every user (chmod 0600)")
    if inline and _world_readable(path):
        found.append(
            f"{path} is readable by every user and holds {', '.join(inline)} inline: "
            "use the *_file form (or chmod 0600)"
        )
    return found


def _world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False
