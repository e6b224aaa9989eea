"""Registering endpoints, changing them, rotating their secret, replaying a message: the API and console share these.

Nothing here commits: the caller commits (with its audit entry, for the console).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update

from app.delivery.endpoints import push_endpoint_problem
from app.extensions import db
from app.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from app.models.types import utcnow
from app.outbound_webhooks.events import ALL_EVENT_TYPES
from app.outbound_webhooks.signing import new_secret

# After a rotation the old secret keeps signing (beside the new one) this long, so receivers can switch over.
ROTATION_OVERLAP = timedelta(hours=24)
MAX_URL = 2048


class EndpointProblem(ValueError):
    """A field of an endpoint is unacceptable; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def url_problem(url: str) -> str | None:
    """The web-push SSRF rules (https, public host), with HERALD_WEBHOOK_ALLOWED_HOSTS exempt."""
    if len(url) > MAX_URL:
        return f"must be at most {MAX_URL} characters"
    return push_endpoint_problem(url, current_app.config["WEBHOOK_ALLOWED_HOSTS"])


def canonical_event_types(names) -> list[str]:
    wanted = set(names)
    unknown = sorted(wanted - set(ALL_EVENT_TYPES))
    if unknown:
        raise EndpointProblem(
            "event_types", f"unknown event type {unknown[0]!r}; choose from {', '.join(ALL_EVENT_TYPES)}"
        )
    if not wanted:
        raise EndpointProblem("event_types", "choose at least one event type")
    return [name for name in ALL_EVENT_TYPES if name in wanted]


def _check_url(url: str) -> str:
    problem = url_problem(url)
    if problem:
        raise EndpointProblem("url", problem)
    return url


def create_endpoint(url: str, event_types, description: str = "") -> tuple[WebhookEndpoint, str]:
    """A new enabled endpoint and its secret (shown to the caller once)."""
    now = utcnow()
    endpoint = WebhookEndpoint(
        url=_check_url(url),
        description=description,
        event_types=canonical_event_types(event_types),
        secret=new_secret(),
        enabled=True,
        consecutive_failures=0,
        created_at=now,
        updated_at=now,
    )
    db.session.add(endpoint)
    db.session.flush()
    return endpoint, endpoint.secret


def change_endpoint(
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types=None,
    description: str | None = None,
    enabled: bool | None = None,
) -> None:
    """Change what is given; enabling again clears the failure streak, so the endpoint gets a fresh 24 h."""
    if url is not None:
        endpoint.url = _check_url(url)
    if event_types is not None:
        endpoint.event_types = canonical_event_types(event_types)
    if description is not None:
        endpoint.description = description
    if enabled is True and not endpoint.enabled:
        endpoint.enabled, endpoint.disabled_reason = True, None
        endpoint.failing_since, endpoint.consecutive_failures = None, 0
    elif enabled is False and endpoint.enabled:
        endpoint.enabled, endpoint.disabled_reason = False, "disabled by hand"
    endpoint.updated_at = utcnow()


def rotate_secret(endpoint: WebhookEndpoint, now: datetime | None = None) -> str:
    """A new secret; the old one keeps signing beside it for ROTATION_OVERLAP."""
    now = now or utcnow()
    endpoint.previous_secret, endpoint.previous_secret_until = endpoint.secret, now + ROTATION_OVERLAP
    endpoint.secret, endpoint.updated_at = new_secret(), now
    return endpoint.secret


REQUEST_LOG_PATH = "/console/webhooks/request-log"


def add_request_log_endpoint(base_url: str) -> WebhookEndpoint:
    """The demo's endpoint: every event, POSTed to Herald's own request log, where admins watch them arrive.

    Written as is (the demo trusts itself); `flask up` allows the base URL's host in HERALD_WEBHOOK_ALLOWED_HOSTS.
    """
    endpoint = WebhookEndpoint(
        url=f"{base_url}{REQUEST_LOG_PATH}",
        description="Demo: Herald's own request log",
        event_types=list(ALL_EVENT_TYPES),
        secret=new_secret(),
        enabled=True,
        consecutive_failures=0,
    )
    db.session.add(endpoint)
    return endpoint


def replay(message: WebhookMessage, now: datetime | None = None) -> bool:
    """Send a message again (same ``webhook-id``) as soon as it is the oldest open one of its user; False if in flight."""
    now = now or utcnow()
    return bool(
        db.session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id == message.id, WebhookMessage.status != "sending")
            .values(status="pending", next_attempt_at=now, finished_at=None, claimed_at=None),
            execution_options={"synchronize_session": False},
        ).rowcount
    )


def endpoints() -> list[WebhookEndpoint]:
    return list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def message_counts(endpoint_id: int) -> dict[str, int]:
    return dict(
        db.session.execute(
            select(WebhookMessage.status, func.count())
            .where(WebhookMessage.endpoint_id == endpoint_id)
            .group_by(WebhookMessage.status)
        ).all()
    )


def recent_messages(endpoint_id: int, limit: int = 50) -> list[WebhookMessage]:
    return list(
        db.session.scalars(
            select(WebhookMessage)
            .where(WebhookMessage.endpoint_id == endpoint_id)
            .order_by(WebhookMessage.id.desc())
            .limit(limit)
        )
    )


def attempts_of(message_ids: list[int]) -> dict[int, list[WebhookAttempt]]:
    found: dict[int, list[WebhookAttempt]] = {message_id: [] for message_id in message_ids}
    if message_ids:
        for attempt in db.session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.message_id.in_(message_ids)).order_by(WebhookAttempt.id)
        ):
            found[attempt.message_id].append(attempt)
    return found
