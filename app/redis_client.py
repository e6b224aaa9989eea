"""The app's Redis connections and key naming.

Every Redis client Herald opens is built by :func:`connect` from ``REDIS_URL``,
which may be ``redis://``, ``rediss://`` or ``unix://`` (the embedded Redis of
`make run`). TCP-only socket options are dropped for a unix socket, where
redis-py 8 rejects them with a ``TypeError``.

Redis pub/sub channels ignore the database number, so every key and channel
Herald owns goes through :func:`key` and carries the configured prefix; two
Herald installations (or two test runs) can share one Redis server.
"""
from __future__ import annotations

from urllib.parse import urlparse

import redis
from flask import current_app

TCP_ONLY_OPTIONS = frozenset({"socket_keepalive", "socket_keepalive_options", "socket_type"})


def is_unix_socket(url: str) -> bool:
    return urlparse(url).scheme == "unix"


def client_options(url: str, options: dict) -> dict:
    """``options`` minus those the URL's kind of connection does not accept."""
    if is_unix_socket(url):
        return {name: value for name, value in options.items() if name not in TCP_ONLY_OPTIONS}
    return dict(options)


def connect(url: str, **options) -> redis.Redis:
    """A client for ``url``, TCP or unix socket alike; ``options`` go to redis-py's ``from_url``."""
    defaults = {"socket_connect_timeout": 2, "health_check_interval": 30}
    return redis.Redis.from_url(url, **client_options(url, {**defaults, **options}))


def init_app(app) -> None:
    app.extensions["herald_redis"] = connect(app.config["REDIS_URL"])


def get_redis() -> redis.Redis:
    return current_app.extensions["herald_redis"]


def key(*parts: object) -> str:
    return ":".join([current_app.config["REDIS_PREFIX"], *map(str, parts)])
