"""The dispatcher: claim, then POST, then record -- the oldest open message of each (endpoint, user) at a time.

Order: a message is claimed only when it is the oldest open (pending or
sending) message of its endpoint and ordering key (the user), so messages
about one user reach an endpoint in the order their facts were committed; a
failing one holds the later ones back until it is delivered or given up (24 h).
Messages about different users, and to different endpoints, go side by side.

At least once: the claim (pending -> sending, one winner) is committed before
the POST. A dispatcher killed mid-POST leaves its claims ``sending``; after the
lease they are claimable again and sent once more, with the same ``webhook-id``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import and_, func, insert, or_, select, update

from app.config import WEBHOOK_QUEUE
from app.extensions import db
from app.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from app.models.types import utcnow
from app.outbound_webhooks import alerts
from app.outbound_webhooks.outbox import DISPATCH_JOB, clear_nudge, nudge
from app.outbound_webhooks.policy import retry_delay, should_disable, succeeded
from app.outbound_webhooks.sender import Answer, Outgoing, post
from app.redis_client import get_redis, key
from app.tasks import enqueue

log = logging.getLogger(__name__)

OPEN = ("pending", "sending")
PASS_BUDGET_SECONDS = 60
# Heads found by one scan of the open messages, in units of the concurrency (the scan is the costly query).
HEADS_PER_SCAN = 25
FOLLOW_UP_WITHIN = timedelta(seconds=60)
_POOLS: dict[int, ThreadPoolExecutor] = {}


def _claimable(now: datetime, lease: int):
    M = WebhookMessage
    return or_(
        and_(M.status == "pending", M.next_attempt_at <= now),
        and_(M.status == "sending", M.claimed_at < now - timedelta(seconds=lease)),
    )


def due_heads(now: datetime, limit: int, lease: int) -> list[int]:
    """Up to ``limit`` due messages, each the oldest open one of its (endpoint, ordering key), oldest first."""
    M = WebhookMessage
    rank = func.row_number().over(partition_by=(M.endpoint_id, M.ordering_key), order_by=M.id).label("rank")
    open_messages = (
        select(M.id, M.status, M.next_attempt_at, M.claimed_at, rank)
        .join(WebhookEndpoint, WebhookEndpoint.id == M.endpoint_id)
        .where(M.status.in_(OPEN), WebhookEndpoint.enabled.is_(True))
        .subquery()
    )
    heads = db.session.scalars(
        select(open_messages.c.id)
        .where(
            open_messages.c.rank == 1,
            or_(
                and_(open_messages.c.status == "pending", open_messages.c.next_attempt_at <= now),
                and_(open_messages.c.status == "sending", open_messages.c.claimed_at < now - timedelta(seconds=lease)),
            ),
        )
        .order_by(open_messages.c.id)
        .limit(limit)
    ).all()
    db.session.commit()
    return list(heads)


def claim(message_ids: list[int], now: datetime, lease: int) -> list[int]:
    """pending (due) or abandoned -> sending, one winner per message; committed before any POST."""
    M = WebhookMessage
    won = (
        db.session.execute(
            update(M)
            .where(M.id.in_(message_ids), _claimable(now, lease))
            .values(status="sending", claimed_at=now, attempts=M.attempts + 1)
            .returning(M.id),
            execution_options={"synchronize_session": False},
        )
        .scalars()
        .all()
    )
    db.session.commit()
    return sorted(won)


@dataclass(frozen=True)
class Claimed:
    id: int
    endpoint_id: int
    attempts: int
    claimed_at: datetime


def _outgoing(message_ids: list[int], now: datetime) -> list[tuple[Claimed, Outgoing]]:
    rows = db.session.execute(
        select(WebhookMessage, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
        .where(WebhookMessage.id.in_(message_ids))
        .order_by(WebhookMessage.id)
    ).all()
    found = []
    for message, endpoint in rows:
        secrets = [endpoint.secret]
        if endpoint.previous_secret and endpoint.previous_secret_until and endpoint.previous_secret_until > now:
            secrets.append(endpoint.previous_secret)
        found.append(
            (
                Claimed(message.id, endpoint.id, message.attempts, message.claimed_at),
                Outgoing(message.id, message.msg_id, endpoint.url, tuple(secrets), message.payload),
            )
        )
    db.session.commit()  # end the read: nothing is held open during the POSTs
    return found


def _pool(size: int) -> ThreadPoolExecutor:
    if size not in _POOLS:
        _POOLS[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="webhook")
    return _POOLS[size]


def send_all(outgoing: list[Outgoing], config) -> list[Answer]:
    """POST every message at once (up to the concurrency), each with the short timeout."""
    timeout, hosts = config["WEBHOOK_TIMEOUT"], config["WEBHOOK_ALLOWED_HOSTS"]
    return list(_pool(config["WEBHOOK_CONCURRENCY"]).map(lambda item: post(item, timeout, hosts), outgoing))


def _outcome(message: Claimed, answer: Answer, now: datetime, schedule) -> dict:
    if succeeded(answer.status_code):
        return {"status": "delivered", "finished_at": now, "last_error": None, "claimed_at": None}
    error = answer.error or f"HTTP {answer.status_code}: {answer.response_excerpt or ''}"[:500]
    delay = retry_delay(message.attempts, schedule)
    if delay is None:
        return {
            "status": "failed",
            "finished_at": now,
            "last_error": f"gave up after {message.attempts} attempts: {error}",
            "claimed_at": None,
        }
    return {
        "status": "pending",
        "next_attempt_at": now + timedelta(seconds=delay),
        "last_error": error,
        "claimed_at": None,
    }


def record(sent: list[tuple[Claimed, Answer]], config, now: datetime | None = None) -> Counter:
    """Write each attempt and where its message goes next; keep each endpoint's failure streak; commit."""
    now = now or utcnow()
    counts: Counter = Counter()
    by_endpoint: dict[int, list[bool]] = defaultdict(list)
    attempts = []
    for message, answer in sent:
        ok = succeeded(answer.status_code)
        attempts.append(
            {
                "message_id": message.id,
                "attempted_at": now,
                "status_code": answer.status_code,
                "duration_ms": answer.duration_ms,
                "succeeded": ok,
                "response_excerpt": answer.response_excerpt,
                "error": answer.error,
            }
        )
        values = _outcome(message, answer, now, config["WEBHOOK_RETRY_SCHEDULE"])
        # Conditional on our claim: a dispatcher that took the message over after the lease records it instead.
        db.session.execute(
            update(WebhookMessage)
            .where(
                WebhookMessage.id == message.id,
                WebhookMessage.status == "sending",
                WebhookMessage.claimed_at == message.claimed_at,
            )
            .values(**values)
        )
        by_endpoint[message.endpoint_id].append(ok)
        counts[values["status"]] += 1
    # An endpoint deleted while its POSTs were in flight took its messages with it: their attempts go unrecorded.
    kept = set(
        db.session.scalars(select(WebhookMessage.id).where(WebhookMessage.id.in_([a["message_id"] for a in attempts])))
    )
    if kept:
        db.session.execute(insert(WebhookAttempt), [attempt for attempt in attempts if attempt["message_id"] in kept])
    disabled = _keep_streaks(by_endpoint, now, config)
    db.session.commit()
    for endpoint_id in disabled:
        alerts.endpoint_disabled(endpoint_id)
    return counts


def _keep_streaks(by_endpoint: dict[int, list[bool]], now: datetime, config) -> list[int]:
    """Reset the streak of endpoints that answered; extend the others', disabling one failing for too long."""
    E = WebhookEndpoint
    disabled = []
    for endpoint_id, results in by_endpoint.items():
        if any(results):
            db.session.execute(update(E).where(E.id == endpoint_id).values(failing_since=None, consecutive_failures=0))
            continue
        db.session.execute(
            update(E)
            .where(E.id == endpoint_id)
            .values(
                consecutive_failures=E.consecutive_failures + len(results),
                failing_since=func.coalesce(E.failing_since, now),
            )
        )
        since, streak = db.session.execute(
            select(E.failing_since, E.consecutive_failures).where(E.id == endpoint_id)
        ).one()
        if should_disable(
            since, streak, now, config["WEBHOOK_DISABLE_AFTER_HOURS"], config["WEBHOOK_DISABLE_MIN_FAILURES"]
        ):
            reason = f"every attempt failed since {since:%Y-%m-%d %H:%M} UTC ({streak} in a row)"
            if db.session.execute(
                update(E)
                .where(E.id == endpoint_id, E.enabled.is_(True))
                .values(enabled=False, disabled_reason=reason, updated_at=now)
            ).rowcount:
                disabled.append(endpoint_id)
    return disabled


def dispatch(budget_seconds: float = PASS_BUDGET_SECONDS) -> Counter:
    """Send what is due until nothing is (or the budget is spent); returns counts by the status messages ended in.

    One scan finds up to HEADS_PER_SCAN heads; they are claimed and sent a group of WEBHOOK_CONCURRENCY at a
    time, so a dispatcher that dies has at most one group in flight.
    """
    config = current_app.config
    size, lease = config["WEBHOOK_CONCURRENCY"], config["WEBHOOK_LEASE_SECONDS"]
    clear_nudge()
    counts: Counter = Counter()
    started = time.monotonic()
    while time.monotonic() - started < budget_seconds:
        heads = due_heads(utcnow(), size * HEADS_PER_SCAN, lease)
        if not heads:
            break
        for start in range(0, len(heads), size):
            if time.monotonic() - started >= budget_seconds:
                break
            now = utcnow()
            won = claim(heads[start : start + size], now, lease)
            if won:
                batch = _outgoing(won, now)
                answers = send_all([outgoing for _claimed, outgoing in batch], config)
                counts += record(
                    [(claimed, answer) for (claimed, _o), answer in zip(batch, answers, strict=True)], config
                )
    _follow_up()
    return counts


def next_due() -> datetime | None:
    """When the next open message of an enabled endpoint is due (a claim's lease end included)."""
    M = WebhookMessage
    lease = timedelta(seconds=current_app.config["WEBHOOK_LEASE_SECONDS"])
    pending, claimed = db.session.execute(
        select(
            func.min(M.next_attempt_at).filter(M.status == "pending"),
            func.min(M.claimed_at).filter(M.status == "sending"),
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == M.endpoint_id)
        .where(M.status.in_(OPEN), WebhookEndpoint.enabled.is_(True))
    ).one()
    db.session.commit()
    times = [t for t in (pending, claimed + lease if claimed else None) if t is not None]
    return min(times) if times else None


def _follow_up() -> None:
    """A retry due within a minute gets a scheduled pass; later ones are found by the scheduler's tick."""
    due = next_due()
    if due is None or due - utcnow() > FOLLOW_UP_WITHIN:
        return
    at = due.replace(microsecond=0) + timedelta(seconds=1)
    try:
        if get_redis().set(key("webhooks", "follow-up", int(at.timestamp())), 1, nx=True, ex=120):
            enqueue(DISPATCH_JOB, priority=WEBHOOK_QUEUE, at=at)
    except RedisError as error:
        log.warning("could not schedule the next webhook pass (%s); the scheduler's tick will", error)


def tick() -> None:
    """The scheduler's periodic check: nudge the dispatcher when something is due (a missed nudge, a retry)."""
    due = next_due()
    if due is not None and due <= utcnow():
        nudge()
