"""The app's Redis connections and key naming.

Every Redis client Herald opens is built by :func:`connect` from ``REDIS_URL``,
which may be ``redis://``, ``rediss://``, ``unix://`` (the embedded Redis of
`make run`) or ``redis+sentinel://`` (a primary found through Redis Sentinel,
see :func:`parse_sentinel_url`). TCP-only socket options are dropped for a unix
socket, where redis-py 8 rejects them with a ``TypeError``.

Redis pub/sub channels ignore the database number, so every key and channel
Herald owns goes through :func:`key` and carries the configured prefix; two
Herald installations (or two test runs) can share one Redis server.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import redis
from flask import current_app
from redis.sentinel import Sentinel

TCP_ONLY_OPTIONS = frozenset({"socket_keepalive", "socket_keepalive_options", "socket_type"})
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_FORM = "redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]"


@dataclass(frozen=True)
class SentinelTarget:
    """Where a ``redis+sentinel://`` URL points: the sentinels to ask, the primary's name, the database."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def auth(self) -> dict:
        return {name: value for name, value in (("username", self.username), ("password", self.password)) if value}


def is_sentinel(url: str) -> bool:
    return urlparse(url).scheme == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelTarget:
    """``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]`` -> its parts.

    The password (and user) are sent to the sentinels and to the Redis servers alike. Raises ``ValueError``
    with a sentence naming what is wrong.
    """
    parsed = urlparse(url)
    if parsed.scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    credentials, _, hosts = parsed.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    sentinels = []
    for location in hosts.split(","):
        host, _, port = location.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"each sentinel must be host:port, got {location!r}")
        sentinels.append((host.strip("[]"), int(port)))
    parts = [part for part in parsed.path.split("/") if part]
    if not parts or len(parts) > 2:
        raise ValueError("the path must be /service_name or /service_name/db")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"the database must be a number, got {parts[1]!r}")
    return SentinelTarget(
        tuple(sentinels),
        unquote(parts[0]),
        int(parts[1]) if len(parts) == 2 else 0,
        unquote(username) or None,
        unquote(password) or None,
    )


def is_unix_socket(url: str) -> bool:
    return urlparse(url).scheme == "unix"


def client_options(url: str, options: dict) -> dict:
    """``options`` minus those the URL's kind of connection does not accept."""
    if is_unix_socket(url):
        return {name: value for name, value in options.items() if name not in TCP_ONLY_OPTIONS}
    return dict(options)


def connect(url: str, **options) -> redis.Redis:
    """A client for ``url``, TCP, unix socket or Sentinel alike; ``options`` go to redis-py's ``from_url``
    (for Sentinel, to the connections to the primary that ``Sentinel.master_for`` makes)."""
    defaults = {"socket_connect_timeout": 2, "health_check_interval": 30}
    if is_sentinel(url):
        return _sentinel_primary(parse_sentinel_url(url), {**defaults, **options})
    return redis.Redis.from_url(url, **client_options(url, {**defaults, **options}))


def _sentinel_primary(target: SentinelTarget, options: dict) -> redis.Redis:
    """A client of the current primary: on a failover its connections fail once, then go to the new primary.

    Commands always go to the primary (never a replica): a counter or a queue read from a replica could be stale.
    """
    timeouts = {name: options[name] for name in ("socket_connect_timeout", "socket_timeout") if name in options}
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs={**timeouts, **target.auth})
    return sentinel.master_for(target.service_name, db=target.db, **target.auth, **options)


def limits_storage(url: str, options: dict) -> tuple[str, dict]:
    """Flask-Limiter's storage URI and options for ``url`` (the ``limits`` library has its own spelling).

    ``limits`` reads Sentinel natively but takes only ``/service_name`` in the path, so the database
    travels as an option, and it must count on the primary, not on a replica.
    """
    if is_unix_socket(url):
        return "redis+unix://" + url[len("unix://") :], options
    if not is_sentinel(url):
        return url, options
    target = parse_sentinel_url(url)
    hosts = ",".join(f"{host}:{port}" for host, port in target.sentinels)
    timeouts = {name: value for name, value in options.items() if name.startswith("socket_")}
    # Credentials as options: limits would pass a URL's percent-encoded password on as it is written.
    return (
        f"redis+sentinel://{hosts}/{target.service_name}",
        {**options, **target.auth, "db": target.db, "use_replicas": False, "sentinel_kwargs": timeouts},
    )


def init_app(app) -> None:
    app.extensions["herald_redis"] = connect(app.config["REDIS_URL"])


def get_redis() -> redis.Redis:
    return current_app.extensions["herald_redis"]


def key(*parts: object) -> str:
    return ":".join([current_app.config["REDIS_PREFIX"], *map(str, parts)])
