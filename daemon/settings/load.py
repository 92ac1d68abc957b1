"""Build the one ``Settings`` object from the TOML file, the environment and secret files.

Every problem becomes a :class:`ConfigError` whose message is one line naming the file
and the key, and never the value (it may be a secret).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from daemon.errors import ConfigError
from daemon.settings.model import Settings

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

    ``secrets=False`` leaves every ``*_file`` secret unread (``drainer status`` needs none).
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
    try:
        settings = Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None
    if not secrets:
        return settings
    return _resolve_secret_files(settings, path, environ)


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


def _resolve_secret_files(settings: Settings, path: Path, environ: Mapping[str, str]) -> Settings:
    """Read ``client_secret_file`` (relative names live in ``$CREDENTIALS_DIRECTORY``)."""
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    resolved: dict[str, list[Any]] = {"docplanner": [], "myinvois": []}
    kinds: dict[str, list[Any]] = {"docplanner": settings.docplanner, "myinvois": settings.myinvois}
    for kind, accounts in kinds.items():
        for index, original in enumerate(accounts):
            account = original
            secret_file = account.client_secret_file
            if secret_file is not None:
                if not secret_file.is_absolute() and credentials:
                    secret_file = Path(credentials) / secret_file
                try:
                    secret = secret_file.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigError(
                        f"{path}: {kind}[{index}].client_secret_file: cannot read "
                        f"{secret_file}: {exc.strerror}"
                    ) from None
                if not secret:
                    raise ConfigError(f"{path}: {kind}[{index}].client_secret_file: file is empty")
                account = account.model_copy(update={"client_secret": SecretStr(secret)})
            resolved[kind].append(account)
    return settings.model_copy(update=resolved)
