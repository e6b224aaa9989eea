"""Every setting Herald reads, read once, from the environment.

Nothing else in Herald touches ``os.environ``. A missing or malformed setting
raises :class:`ConfigError` with one line naming it; ``wsgi.py`` turns that
into a clean exit instead of a traceback in the middle of a request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

from app.settings_values import (
    ConfigError,
    check_api_rate_limit,
    check_database_url,
    check_http_url,
    check_redis_url,
    check_smtp_url,
    parse_boolean,
    parse_float,
    parse_hosts,
    parse_int,
    parse_rate,
    parse_seconds_list,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"
QUEUE_NAMES = ("critical", "high", "normal", "low")
# Outbound webhooks are dispatched from a queue of their own, so a slow endpoint never holds up a send.
WEBHOOK_QUEUE = "webhooks"


def provider_settings(env: dict[str, str], rq_workers: int) -> dict:
    """Channel providers: credentials, endpoints, rate limits, breakers.

    The email, SMS and push providers' own settings are listed on the helpers below; for all of them:
    HERALD_BREAKER_FAIL_MAX, HERALD_BREAKER_RESET_SECONDS   circuit breaker per provider
    HERALD_CHANNEL_SLOTS                  workers one external channel may occupy at once
                                          (default: all but one, so one outage never takes them all)
    HERALD_PROVIDER_CONNECT_TIMEOUT, HERALD_PROVIDER_TIMEOUT   HTTP provider timeouts, seconds
    """
    get = env.get
    return {
        **_email_provider_settings(env),
        **_sms_provider_settings(env),
        **_push_provider_settings(env),
        "BREAKER_FAIL_MAX": parse_int("HERALD_BREAKER_FAIL_MAX", get("HERALD_BREAKER_FAIL_MAX"), 10, minimum=1),
        "BREAKER_RESET_SECONDS": parse_float("HERALD_BREAKER_RESET_SECONDS", get("HERALD_BREAKER_RESET_SECONDS"), 30.0),
        "CHANNEL_SLOTS": parse_int(
            "HERALD_CHANNEL_SLOTS", get("HERALD_CHANNEL_SLOTS"), max(1, rq_workers - 1), minimum=1
        ),
        "PROVIDER_CONNECT_TIMEOUT": parse_float(
            "HERALD_PROVIDER_CONNECT_TIMEOUT", get("HERALD_PROVIDER_CONNECT_TIMEOUT"), 3.0, minimum=0.1
        ),
        "PROVIDER_TIMEOUT": parse_float("HERALD_PROVIDER_TIMEOUT", get("HERALD_PROVIDER_TIMEOUT"), 10.0, minimum=0.1),
    }


def _email_provider_settings(env: dict[str, str]) -> dict:
    """Email relays and bounces.

    SMTP_URL / SMTP_FALLBACK_URL          email relays, tried in this order
    HERALD_SMTP_TIMEOUT                   seconds per SMTP connect/command (default 10)
    HERALD_UNSUBSCRIBE_MAILTO             a mailbox listed as <mailto:…> in List-Unsubscribe beside the one-click URL
    SENDGRID_WEBHOOK_PUBLIC_KEY           the Event Webhook's verification key (base64), for bounces
    The provider APIs (EMAIL_PROVIDER and the rest) are listed on _email_api_settings.
    """
    get = env.get
    return {
        **_email_api_settings(env),
        "SMTP_FALLBACK_URL": check_smtp_url(env["SMTP_FALLBACK_URL"]) if get("SMTP_FALLBACK_URL") else None,
        "UNSUBSCRIBE_MAILTO": get("HERALD_UNSUBSCRIBE_MAILTO") or None,
        "SMTP_TIMEOUT": parse_float("HERALD_SMTP_TIMEOUT", get("HERALD_SMTP_TIMEOUT"), 10.0, minimum=0.1),
        "SENDGRID_WEBHOOK_PUBLIC_KEY": get("SENDGRID_WEBHOOK_PUBLIC_KEY"),
    }


EMAIL_PROVIDERS = ("smtp", "sendgrid", "ses", "postmark")


def _email_api_settings(env: dict[str, str]) -> dict:
    """Email through a provider's HTTP API in batches (app/channels/email_api/).

    EMAIL_PROVIDER                        smtp (default), sendgrid, ses or postmark
    SENDGRID_API_KEY, SENDGRID_API_URL    Mail Send key; default https://api.sendgrid.com
    SES_REGION, SES_ACCESS_KEY_ID, SES_SECRET_ACCESS_KEY   SES v2 account (SigV4)
    SES_ENDPOINT_URL                      default https://email.<SES_REGION>.amazonaws.com
    SES_CONFIGURATION_SET                 optional: the configuration set that publishes bounces to SNS
    SES_SNS_TOPIC_ARNS                    topics whose signed notifications /webhooks/email/ses accepts (comma-separated)
    POSTMARK_SERVER_TOKEN, POSTMARK_API_URL   server token; default https://api.postmarkapp.com
    POSTMARK_STREAM, POSTMARK_BROADCAST_STREAM   message streams (default outbound; broadcast for marketing)
    HERALD_EMAIL_DOMAIN_RATE              recipients per second per sending domain, all workers together
                                          (default 14/second with ses -- SES's starting quota -- else 0, unlimited)
    HERALD_SNS_TEST_CERT_PREFIX           TESTS ONLY: an http://127.0.0.1 prefix accepted for SigningCertURL and
                                          SubscribeURL besides https://sns.<region>.amazonaws.com; never set it in production
    """
    get = env.get
    provider = (get("EMAIL_PROVIDER") or "smtp").strip().lower()
    if provider not in EMAIL_PROVIDERS:
        raise ConfigError(f"EMAIL_PROVIDER must be one of {', '.join(EMAIL_PROVIDERS)}, got {provider!r}")
    test_prefix = get("HERALD_SNS_TEST_CERT_PREFIX") or None
    if test_prefix and not test_prefix.startswith(("http://127.", "https://127.")):
        raise ConfigError("HERALD_SNS_TEST_CERT_PREFIX is for tests: a loopback URL prefix like http://127.0.0.1:8000/")
    return {
        "EMAIL_PROVIDER": provider,
        "SENDGRID_API_KEY": get("SENDGRID_API_KEY"),
        "SENDGRID_API_URL": check_http_url("SENDGRID_API_URL", get("SENDGRID_API_URL") or "https://api.sendgrid.com"),
        "SES_REGION": get("SES_REGION"),
        "SES_ACCESS_KEY_ID": get("SES_ACCESS_KEY_ID"),
        "SES_SECRET_ACCESS_KEY": get("SES_SECRET_ACCESS_KEY"),
        "SES_ENDPOINT_URL": check_http_url("SES_ENDPOINT_URL", get("SES_ENDPOINT_URL"))
        if get("SES_ENDPOINT_URL")
        else None,
        "SES_CONFIGURATION_SET": get("SES_CONFIGURATION_SET") or None,
        "SES_SNS_TOPIC_ARNS": tuple(t.strip() for t in (get("SES_SNS_TOPIC_ARNS") or "").split(",") if t.strip()),
        "POSTMARK_SERVER_TOKEN": get("POSTMARK_SERVER_TOKEN"),
        "POSTMARK_API_URL": check_http_url(
            "POSTMARK_API_URL", get("POSTMARK_API_URL") or "https://api.postmarkapp.com"
        ),
        "POSTMARK_STREAM": get("POSTMARK_STREAM") or "outbound",
        "POSTMARK_BROADCAST_STREAM": get("POSTMARK_BROADCAST_STREAM") or "broadcast",
        "EMAIL_DOMAIN_RATE": parse_rate(
            "HERALD_EMAIL_DOMAIN_RATE", get("HERALD_EMAIL_DOMAIN_RATE"), "14/second" if provider == "ses" else "0"
        ),
        "SNS_TEST_CERT_PREFIX": test_prefix,
    }


def _sms_provider_settings(env: dict[str, str]) -> dict:
    """Twilio accounts.

    TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN SMS account; TWILIO_FROM (a number) or
    TWILIO_FROM / TWILIO_MESSAGING_SERVICE_SID   TWILIO_MESSAGING_SERVICE_SID as sender
    TWILIO_FALLBACK_ACCOUNT_SID, ..._AUTH_TOKEN, ..._FROM   a second SMS account for failover
    TWILIO_API_BASE                       default https://api.twilio.com (tests point it at a local fake)
    HERALD_SMS_RATE                       per sending number, default 1/second (a US long code)
    HERALD_SMS_HELP_TEXT                  the reply to an inbound HELP
    """
    get = env.get
    return {
        "TWILIO_ACCOUNT_SID": get("TWILIO_ACCOUNT_SID"),
        "TWILIO_AUTH_TOKEN": get("TWILIO_AUTH_TOKEN"),
        "TWILIO_FROM": get("TWILIO_FROM"),
        "TWILIO_MESSAGING_SERVICE_SID": get("TWILIO_MESSAGING_SERVICE_SID"),
        "TWILIO_FALLBACK_ACCOUNT_SID": get("TWILIO_FALLBACK_ACCOUNT_SID"),
        "TWILIO_FALLBACK_AUTH_TOKEN": get("TWILIO_FALLBACK_AUTH_TOKEN"),
        "TWILIO_FALLBACK_FROM": get("TWILIO_FALLBACK_FROM"),
        "TWILIO_API_BASE": check_http_url("TWILIO_API_BASE", get("TWILIO_API_BASE") or "https://api.twilio.com"),
        "SMS_RATE": parse_rate("HERALD_SMS_RATE", get("HERALD_SMS_RATE"), "1/second"),
        "SMS_HELP_TEXT": get("HERALD_SMS_HELP_TEXT")
        or "Herald notifications. Reply STOP to unsubscribe, START to resubscribe.",
    }


def _push_provider_settings(env: dict[str, str]) -> dict:
    """APNs, FCM and web push.

    APNS_BASE, APNS_TEAM_ID, APNS_KEY_ID, APNS_KEY_FILE (the .p8), APNS_TOPIC (bundle id), HERALD_APNS_RATE
    FCM_BASE, FCM_PROJECT_ID, FCM_SERVICE_ACCOUNT_FILE, HERALD_FCM_RATE (default 600000/minute)
    HERALD_WEB_PUSH_SUBJECT (contact e-mail for VAPID), HERALD_WEB_PUSH_TTL, HERALD_WEB_PUSH_RATE
    HERALD_WEB_PUSH_PRIVATE_HOSTS         push services on your own network (host names or IPs, comma-separated)
                                          Herald may call although private, over http too; default none
    """
    get = env.get
    return {
        "APNS_BASE": check_http_url("APNS_BASE", get("APNS_BASE") or "https://api.push.apple.com"),
        "APNS_TEAM_ID": get("APNS_TEAM_ID"),
        "APNS_KEY_ID": get("APNS_KEY_ID"),
        "APNS_KEY_FILE": get("APNS_KEY_FILE"),
        "APNS_TOPIC": get("APNS_TOPIC"),
        "APNS_RATE": parse_rate("HERALD_APNS_RATE", get("HERALD_APNS_RATE"), "0"),
        "FCM_BASE": check_http_url("FCM_BASE", get("FCM_BASE") or "https://fcm.googleapis.com"),
        "FCM_PROJECT_ID": get("FCM_PROJECT_ID"),
        "FCM_SERVICE_ACCOUNT_FILE": get("FCM_SERVICE_ACCOUNT_FILE"),
        "FCM_RATE": parse_rate("HERALD_FCM_RATE", get("HERALD_FCM_RATE"), "600000/minute"),
        "WEB_PUSH_SUBJECT": get("HERALD_WEB_PUSH_SUBJECT") or "admin@herald.local",
        "WEB_PUSH_TTL": parse_int("HERALD_WEB_PUSH_TTL", get("HERALD_WEB_PUSH_TTL"), 24 * 3600),
        "WEB_PUSH_RATE": parse_rate("HERALD_WEB_PUSH_RATE", get("HERALD_WEB_PUSH_RATE"), "0"),
        "WEB_PUSH_PRIVATE_HOSTS": parse_hosts("HERALD_WEB_PUSH_PRIVATE_HOSTS", get("HERALD_WEB_PUSH_PRIVATE_HOSTS")),
    }


# Standard Webhooks' recommended schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after each failure), its last
# step shortened so that the last of the eight attempts lands 24 h after the first.
WEBHOOK_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,23095"


def webhook_settings(env: dict[str, str]) -> dict:
    """Outbound webhooks (app/outbound_webhooks/).

    HERALD_WEBHOOK_ALLOWED_HOSTS          host names/addresses exempt from the public-https rule (tests, the demo);
                                          comma-separated, default none
    HERALD_WEBHOOK_TIMEOUT                seconds per POST, connect included (default 5)
    HERALD_WEBHOOK_RETRY_SCHEDULE         seconds to wait after each failed attempt (default: 24 h, see above)
    HERALD_WEBHOOK_DISABLE_AFTER_HOURS    an endpoint whose every attempt failed for this long ...
    HERALD_WEBHOOK_DISABLE_MIN_FAILURES   ... and at least this many times in a row is disabled (default 24 h, 10)
    HERALD_WEBHOOK_CONCURRENCY            POSTs in flight at once per dispatcher (default 8)
    HERALD_WEBHOOK_LEASE_SECONDS          a claimed message whose dispatcher died is sent again after this (default 60)
    """
    get = env.get
    hosts = parse_hosts("HERALD_WEBHOOK_ALLOWED_HOSTS", get("HERALD_WEBHOOK_ALLOWED_HOSTS"))
    timeout = parse_float("HERALD_WEBHOOK_TIMEOUT", get("HERALD_WEBHOOK_TIMEOUT"), 5.0, minimum=0.1)
    return {
        "WEBHOOK_ALLOWED_HOSTS": hosts,
        "WEBHOOK_TIMEOUT": timeout,
        "WEBHOOK_RETRY_SCHEDULE": parse_seconds_list(
            "HERALD_WEBHOOK_RETRY_SCHEDULE", get("HERALD_WEBHOOK_RETRY_SCHEDULE"), WEBHOOK_RETRY_SCHEDULE
        ),
        "WEBHOOK_DISABLE_AFTER_HOURS": parse_float(
            "HERALD_WEBHOOK_DISABLE_AFTER_HOURS", get("HERALD_WEBHOOK_DISABLE_AFTER_HOURS"), 24.0
        ),
        "WEBHOOK_DISABLE_MIN_FAILURES": parse_int(
            "HERALD_WEBHOOK_DISABLE_MIN_FAILURES", get("HERALD_WEBHOOK_DISABLE_MIN_FAILURES"), 10, minimum=1
        ),
        "WEBHOOK_CONCURRENCY": parse_int("HERALD_WEBHOOK_CONCURRENCY", get("HERALD_WEBHOOK_CONCURRENCY"), 8, minimum=1),
        "WEBHOOK_LEASE_SECONDS": parse_int(
            "HERALD_WEBHOOK_LEASE_SECONDS", get("HERALD_WEBHOOK_LEASE_SECONDS"), max(60, int(timeout * 3)), minimum=1
        ),
    }


def scheduler_settings(env: dict[str, str]) -> dict:
    """Scheduler processes elect one active leader through a Redis lease of this many seconds (app/leadership.py)."""
    lease = env.get("HERALD_SCHEDULER_LEASE_SECONDS")
    return {"SCHEDULER_LEASE_SECONDS": parse_float("HERALD_SCHEDULER_LEASE_SECONDS", lease, 15.0, minimum=1.0)}


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


def embed_settings(env: dict[str, str], secret_key: str, inbox_secret: str) -> dict:
    """User tokens (JWT HS256) and the origins allowed to embed the inbox component.

    HERALD_USER_TOKEN_SECRET   key of user tokens; at least 32 characters and not the inbox-link secret
                               (default: derived from SECRET_KEY, so only ``flask user-token`` can make them)
    HERALD_USER_TOKEN_MAX_SECONDS  the furthest exp a token may carry, from now (default 86400)
    HERALD_EMBED_ORIGINS       space- or comma-separated origins (scheme://host[:port]) that get CORS headers
    """
    # Keyed by a constant, not by the secret: an inbox link is HMAC keyed by the secret, so a link made for the
    # user id "herald user tokens" would otherwise print this key.
    derived = hmac.new(b"herald user tokens", secret_key.encode(), hashlib.sha256).hexdigest()
    token_secret = env.get("HERALD_USER_TOKEN_SECRET") or derived
    if len(token_secret) < 32:
        raise ConfigError("HERALD_USER_TOKEN_SECRET must be at least 32 characters")
    if token_secret == inbox_secret:
        raise ConfigError(
            "HERALD_USER_TOKEN_SECRET must differ from HERALD_INBOX_SECRET (see the README's embed section)"
        )
    origins = []
    for origin in (env.get("HERALD_EMBED_ORIGINS") or "").replace(",", " ").split():
        parsed = urlparse(origin)
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.netloc
            or parsed.path
            or parsed.query
            or origin.endswith("/")
        ):
            raise ConfigError(f"HERALD_EMBED_ORIGINS holds origins like https://app.example.com, got {origin!r}")
        origins.append(origin.lower())
    return {
        "USER_TOKEN_SECRET": token_secret,
        "USER_TOKEN_MAX_SECONDS": parse_int(
            "HERALD_USER_TOKEN_MAX_SECONDS", env.get("HERALD_USER_TOKEN_MAX_SECONDS"), 86400, minimum=1
        ),
        "EMBED_ORIGINS": tuple(origins),
    }


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

    rq_workers = parse_int("HERALD_RQ_WORKERS", env.get("HERALD_RQ_WORKERS"), 2, minimum=1)
    port = parse_int("HERALD_PORT", env.get("HERALD_PORT"), 5000, minimum=1)
    inbox_secret = env.get("HERALD_INBOX_SECRET") or secret_key
    return {
        **provider_settings(env, rq_workers),
        **scheduler_settings(env),
        **embed_settings(env, secret_key, inbox_secret),
        **webhook_settings(env),
        "INSTANCE_PATH": str(instance),
        "SQLALCHEMY_DATABASE_URI": check_database_url(database_url),
        "REDIS_URL": check_redis_url(redis_url),
        "REDIS_EMBEDDED": not env.get("REDIS_URL"),
        "REDIS_PREFIX": env.get("HERALD_REDIS_PREFIX", "herald"),
        "SECRET_KEY": secret_key,
        "INBOX_SECRET": inbox_secret,
        "BASE_URL": check_http_url("HERALD_BASE_URL", env.get("HERALD_BASE_URL", f"http://127.0.0.1:{port}")),
        "SMTP_URL": check_smtp_url(env["SMTP_URL"]) if env.get("SMTP_URL") else None,
        "MAIL_FROM": env.get("HERALD_MAIL_FROM", "Herald <no-reply@herald.local>"),
        "API_RATE_LIMIT": check_api_rate_limit(
            "HERALD_API_RATE_LIMIT", env.get("HERALD_API_RATE_LIMIT", "6000/minute")
        ),
        **_delivery_settings(env),
        **_session_settings(env),
        "SQLALCHEMY_ENGINE_OPTIONS": _pool_options(env, database_url),
        "PORT": port,
        # The address `flask web` listens on: loopback unless told otherwise (a container says 0.0.0.0).
        "HOST": env.get("HERALD_HOST") or "127.0.0.1",
        # `flask seed-demo --when-enabled` (the container image's migrate step) loads the demo data only when on.
        "DEMO_DATA": parse_boolean(env.get("HERALD_DEMO_DATA")),
        "WEB_WORKERS": parse_int("HERALD_WEB_WORKERS", env.get("HERALD_WEB_WORKERS"), 2, minimum=1),
        "RQ_WORKERS": rq_workers,
        "SSE_HEARTBEAT_SECONDS": parse_float(
            "HERALD_SSE_HEARTBEAT_SECONDS", env.get("HERALD_SSE_HEARTBEAT_SECONDS"), 15.0, minimum=0.05
        ),
        # When set, /metrics answers only to "Authorization: Bearer <token>".
        "METRICS_TOKEN": env.get("HERALD_METRICS_TOKEN") or None,
        # Daily rules: evaluated every N minutes (aligned to the clock), claims sent in batches of this size.
        "RULES_EVALUATION_MINUTES": parse_int(
            "RULES_EVALUATION_MINUTES", env.get("RULES_EVALUATION_MINUTES"), 15, minimum=1
        ),
        "RULES_SEND_BATCH": parse_int("HERALD_RULES_SEND_BATCH", env.get("HERALD_RULES_SEND_BATCH"), 1000, minimum=1),
    }


def _delivery_settings(env: dict[str, str]) -> dict:
    """How long Herald keeps what it sent, and what one send may cost it."""
    return {
        # Notifications (with deliveries and events) and the rules' sent log older than this are deleted; 0 keeps all.
        "RETENTION_DAYS": parse_int("HERALD_RETENTION_DAYS", env.get("HERALD_RETENTION_DAYS"), 365),
        # Links in email and push go through {BASE_URL}/c/<signed token> so clicks can be counted.
        "TRACK_CLICKS": parse_boolean(env.get("HERALD_TRACK_CLICKS"), default=True),
        "MARKETING_CAP_PER_HOUR": parse_int(
            "HERALD_MARKETING_CAP_PER_HOUR", env.get("HERALD_MARKETING_CAP_PER_HOUR"), 3
        ),
        # An in-app-only send to more recipients than this is stored once and fanned out on read (app/broadcasts/).
        "BROADCAST_THRESHOLD": parse_int(
            "HERALD_BROADCAST_THRESHOLD", env.get("HERALD_BROADCAST_THRESHOLD"), 50_000, minimum=1
        ),
        # What one render of a user-authored template may spend; over it, the delivery fails as render_error.
        "RENDER_TIMEOUT_MS": parse_int("HERALD_RENDER_TIMEOUT_MS", env.get("HERALD_RENDER_TIMEOUT_MS"), 200, minimum=1),
        "RENDER_MAX_BYTES": parse_int(
            "HERALD_RENDER_MAX_BYTES", env.get("HERALD_RENDER_MAX_BYTES"), 256 * 1024, minimum=1024
        ),
        "DISPATCH_LEASE_SECONDS": parse_int(
            "HERALD_DISPATCH_LEASE_SECONDS", env.get("HERALD_DISPATCH_LEASE_SECONDS"), 120, minimum=1
        ),
        # Workflows: how long a worker holds a run it advances (a killed one's run is taken again after this), and
        # how often a run waiting on an outcome (read, delivered) looks again.
        "WORKFLOW_LEASE_SECONDS": parse_int(
            "HERALD_WORKFLOW_LEASE_SECONDS", env.get("HERALD_WORKFLOW_LEASE_SECONDS"), 60, minimum=0
        ),
        "WORKFLOW_POLL_SECONDS": parse_int(
            "HERALD_WORKFLOW_POLL_SECONDS", env.get("HERALD_WORKFLOW_POLL_SECONDS"), 10, minimum=1
        ),
    }


def _session_settings(env: dict[str, str]) -> dict:
    """Console sessions, cookies and forms."""
    return {
        "SESSION_COOKIE_SECURE": parse_boolean(env.get("HERALD_SECURE_COOKIES")),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
    }


def _pool_options(env: dict[str, str], database_url: str) -> dict:
    """The database pool: one connection per request a gevent worker runs at once under load (beyond it,
    overflow connections open and close per request). Idle connections are pinged before use (app/db_pool.py),
    busy ones not: a pre-ping on every checkout cost the accept path a fifth of its PostgreSQL throughput."""
    if database_url in ("sqlite://", "sqlite:///:memory:"):
        return {}  # one connection per thread, a pool without a size
    return {
        "pool_size": parse_int("HERALD_DB_POOL_SIZE", env.get("HERALD_DB_POOL_SIZE"), 20, minimum=1),
        "max_overflow": 10,
    }
