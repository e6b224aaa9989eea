"""The app's Redis connection and key naming.

Redis pub/sub channels ignore the database number, so every key and channel
Herald owns goes through :func:`key` and carries the configured prefix; two
Herald installations (or two test runs) can share one Redis server.
"""
from __future__ import annotations

import redis
from flask import current_app


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=30)


def init_app(app) -> None:
    app.extensions["herald_redis"] = connect(app.config["REDIS_URL"])


def get_redis() -> redis.Redis:
    return current_app.extensions["herald_redis"]


def key(*parts: object) -> str:
    return ":".join([current_app.config["REDIS_PREFIX"], *map(str, parts)])
