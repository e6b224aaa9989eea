"""How one setting's text becomes a value: the parse and check helpers behind :mod:`app.config`.

They read no environment themselves (``app.config`` hands them the text); a malformed value raises
:class:`ConfigError` with one line naming the setting.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlparse

from limits import parse as parse_limit
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.redis_client import SENTINEL_FORM, is_sentinel, parse_sentinel_url


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line for humans."""


def parse_boolean(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_int(name: str, value: str | None, default: int, minimum: int = 0) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def check_database_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a database URL: {url!r}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(f"DATABASE_URL must be sqlite:// or postgresql://, got {parsed.get_backend_name()!r}")
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
    return url


def check_redis_url(url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme not in ("redis", "rediss", "unix", "redis+sentinel"):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss://, unix:// or redis+sentinel://, got {url!r}")
    if is_sentinel(url):
        try:
            parse_sentinel_url(url)
        except ValueError as error:
            raise ConfigError(f"REDIS_URL must look like {SENTINEL_FORM}: {error}") from None
    return url


def check_http_url(name: str, url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


def parse_hosts(name: str, value: str | None) -> frozenset[str]:
    """``"push.lan, 10.0.0.7"`` -> the lower-cased host names and IP addresses, no scheme, port or path."""
    hosts = frozenset(part.strip().lower().strip("[]") for part in (value or "").split(",") if part.strip())
    for host in hosts:
        if not re.fullmatch(r"[a-z0-9.:-]+", host) or (":" in host and not _is_ip(host)):
            raise ConfigError(f"{name} lists host names or IP addresses, comma-separated; got {host!r}")
    return hosts


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_smtp_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("smtp", "smtps", "smtp+starttls") or not parsed.hostname:
        raise ConfigError(f"SMTP_URL must look like smtp://user:pass@host:port, got {url!r}")
    return url


def parse_rate(name: str, value: str | None, default: str) -> float:
    """``"1/second"``, ``"600000/minute"`` or ``"0"`` (unlimited) -> tokens per second (0.0 = unlimited)."""
    text = (value or default).strip().lower()
    if text in ("0", "unlimited"):
        return 0.0
    count, _, unit = text.partition("/")
    seconds = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}.get(unit)
    try:
        number = float(count)
    except ValueError:
        number = -1
    if seconds is None or number <= 0:
        raise ConfigError(f"{name} must look like 10/second, 600000/minute or 0, got {value!r}")
    return number / seconds


def check_rate_limit(text: str) -> str:
    """One ``limits`` rate such as ``6000/minute``; raises ValueError with a sentence for a form or the CLI."""
    text = text.strip()
    if any(sep in text for sep in ";,|"):
        raise ValueError("Give one rate, like 6000/minute.")
    try:
        item = parse_limit(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate; write it like 6000/minute or 10/second.") from None
    if item.amount < 1:
        raise ValueError("The rate must allow at least one request.")
    return text


def check_api_rate_limit(name: str, value: str) -> str:
    """The per-key limit a new API key gets unless it is given its own."""
    try:
        return check_rate_limit(value)
    except ValueError as error:
        raise ConfigError(f"{name}: {error}") from None


def parse_float(name: str, value: str | None, default: float, minimum: float = 0.0) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def parse_seconds_list(name: str, value: str | None, default: str) -> tuple[float, ...]:
    """``"5,300,1800"`` -> (5.0, 300.0, 1800.0); every item a non-negative number."""
    try:
        items = tuple(float(part) for part in (value or default).split(",") if part.strip())
    except ValueError:
        items = ()
    if not items or any(item < 0 for item in items):
        raise ConfigError(f"{name} must be comma-separated seconds like 5,300,1800, got {value!r}")
    return items
