"""Every setting Herald reads, read once, from the environment.

Nothing else in Herald touches ``os.environ``. A missing or malformed setting
raises :class:`ConfigError` with one line naming it; ``wsgi.py`` turns that
into a clean exit instead of a traceback in the middle of a request.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"
QUEUE_NAMES = ("critical", "high", "normal", "low")


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
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}")
    return url


def check_http_url(name: str, url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


def check_smtp_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("smtp", "smtps", "smtp+starttls") or not parsed.hostname:
        raise ConfigError(f"SMTP_URL must look like smtp://user:pass@host:port, got {url!r}")
    return url


def instance_secret(instance_path: Path) -> str:
    """Return the secret kept in the instance folder, creating it on first run."""
    path = instance_path / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def embedded_redis_url(instance_path: Path) -> str:
    return f"unix://{instance_path / 'redis.sock'}"


def from_environment(env: dict[str, str] | None = None, instance_path: Path | None = None) -> dict:
    """Build the Flask config mapping from environment variables."""
    env = dict(os.environ if env is None else env)
    instance = Path(env.get("HERALD_INSTANCE_PATH") or instance_path or DEFAULT_INSTANCE)
    instance.mkdir(parents=True, exist_ok=True)

    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'herald.db'}"
    redis_url = env.get("REDIS_URL") or embedded_redis_url(instance)
    secret_key = env.get("SECRET_KEY") or instance_secret(instance)
    if len(secret_key) < 16:
        raise ConfigError("SECRET_KEY must be at least 16 characters")

    return {
        "INSTANCE_PATH": str(instance),
        "SQLALCHEMY_DATABASE_URI": check_database_url(database_url),
        "REDIS_URL": check_redis_url(redis_url),
        "REDIS_EMBEDDED": not env.get("REDIS_URL"),
        "REDIS_PREFIX": env.get("HERALD_REDIS_PREFIX", "herald"),
        "SECRET_KEY": secret_key,
        "INBOX_SECRET": env.get("HERALD_INBOX_SECRET") or secret_key,
        "BASE_URL": check_http_url("HERALD_BASE_URL", env.get("HERALD_BASE_URL", "http://127.0.0.1:5000")),
        "SMTP_URL": check_smtp_url(env["SMTP_URL"]) if env.get("SMTP_URL") else None,
        "MAIL_FROM": env.get("HERALD_MAIL_FROM", "Herald <no-reply@herald.local>"),
        "API_RATE_LIMIT": env.get("HERALD_API_RATE_LIMIT", "6000/minute"),
        "MARKETING_CAP_PER_HOUR": parse_int("HERALD_MARKETING_CAP_PER_HOUR", env.get("HERALD_MARKETING_CAP_PER_HOUR"), 3),
        "DISPATCH_LEASE_SECONDS": parse_int("HERALD_DISPATCH_LEASE_SECONDS", env.get("HERALD_DISPATCH_LEASE_SECONDS"), 120, minimum=1),
        "SESSION_COOKIE_SECURE": parse_boolean(env.get("HERALD_SECURE_COOKIES")),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "WTF_CSRF_TIME_LIMIT": None,
        "PORT": parse_int("HERALD_PORT", env.get("HERALD_PORT"), 5000, minimum=1),
        "WEB_WORKERS": parse_int("HERALD_WEB_WORKERS", env.get("HERALD_WEB_WORKERS"), 2, minimum=1),
        "RQ_WORKERS": parse_int("HERALD_RQ_WORKERS", env.get("HERALD_RQ_WORKERS"), 2, minimum=1),
    }
