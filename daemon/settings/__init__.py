"""The one ``Settings`` object: TOML file + ``DRAINER_`` environment overrides (SPEC §4).

Built once in ``main()`` by :func:`load_settings` and passed down; nothing else reads
the environment.

- :mod:`.units`: durations, sizes, timestamps;
- :mod:`.network`: CIDR lists and header names;
- :mod:`.redis_url`: what a ``[redis] url`` names;
- :mod:`.redis`: ``[redis]`` and ``[redis.sentinel]``;
- :mod:`.sections`: ``[streams]``, ``[spool]``, ``[server]``, ``[runtime]``, ``[log]``;
- :mod:`.model`: the accounts and the whole ``Settings``;
- :mod:`.env`: the ``DRAINER_`` environment over the file;
- :mod:`.load`: file + environment + ``*_file`` secrets -> ``Settings`` or ConfigError.
"""

from daemon.settings.load import DEFAULT_CONFIG_PATH, config_path, load_settings
from daemon.settings.model import DocPlannerAccount, MyInvoisAccount, Settings
from daemon.settings.redis import RedisSentinelSettings, RedisSettings
from daemon.settings.redis_url import redact_url
from daemon.settings.sections import PULL_HEADROOM, ServerSettings, StreamSettings
from daemon.settings.units import parse_duration, parse_size, parse_timestamp

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "PULL_HEADROOM",
    "DocPlannerAccount",
    "MyInvoisAccount",
    "RedisSentinelSettings",
    "RedisSettings",
    "ServerSettings",
    "Settings",
    "StreamSettings",
    "config_path",
    "load_settings",
    "parse_duration",
    "parse_size",
    "parse_timestamp",
    "redact_url",
]
