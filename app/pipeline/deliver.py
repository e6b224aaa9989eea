"""The one consumer: deliver a chunk of 1..N deliveries -- re-check by origin, claim, send, record.

Every producer (an API send is a chunk of one; a campaign or rule batch a
chunk of up to a thousand) hands delivery ids to :func:`deliver`:

1. the chunk is loaded in one query (delivery, notification, recipient);
   what is not due yet goes back to the queue for its time;
2. channel by channel (in-app first: it is instant and what an open page is
   waiting for), the origin's policy is applied (:mod:`app.pipeline.origin`):
   a paused campaign waits, a cancelled or ended one and a rule outside its
   window are SUPPRESSED;
3. in-app lands in bulk (:meth:`InAppChannel.send_many`); an external channel
   holds one of its worker slots (``CHANNEL_SLOTS``) and sends a window at a
   time: claimed in one statement (one winner per delivery) and committed,
   streamed with the channel's concurrency in flight, results recorded in bulk
   as they come (:mod:`app.pipeline.sending`) -- a crash leaves unrecorded only
   what was handed to the provider, re-driven after its lease with the same
   provider idempotency key; what was claimed but never handed goes normally;
4. retries, "not now" answers and paused deliveries go back to the queue
   (:func:`app.tasks.deliver_later`); campaign counters move in one Redis
   round trip and a campaign with nothing left to send is finished.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import insert, update

from app.campaigns import progress
from app.channels import Outcome, Result, adapter_for, channel_class, send_rank
from app.channels.guard import acquire_slot, release_slot
from app.channels.in_app import InboxEntry
from app.delivery.constants import FINAL_STATUSES, PENDING, SENDING, SUPPRESSED, UNCERTAIN
from app.delivery.rendering import RenderError
from app.extensions import db
from app.models import Delivery, DeliveryEvent
from app.models.bulk import among
from app.models.types import utcnow
from app.pipeline import claims, origin, sending
from app.pipeline.content import Item, Renderers, build_messages, load_items
from app.pipeline.outcomes import Report, record
from app.redis_client import get_redis
from app.tasks import deliver_later


def deliver(delivery_ids: list[int], now: datetime | None = None) -> Report:
    """Deliver a chunk. Idempotent: only due deliveries are claimed, so a re-run or re-drive sends nothing twice."""
    now = now or utcnow()
    report = Report()
    items = _due_items(load_items(list(delivery_ids)), now, report)
    db.session.commit()  # end the read (nothing written): claims run in transactions of their own
    renderers = Renderers()
    channels = sorted({i.channel for i in items}, key=send_rank)
    for channel in channels:
        group = _allowed([i for i in items if i.channel == channel], now, report)
        adapter_class = channel_class(channel)
        if not group:
            continue
        if adapter_class is not None and not adapter_class.external:
            send_in_app(channel, group, renderers, report, now)
        else:
            send_external(channel, group, renderers, report)
    _finish(report)
    return report


def _due_items(items: list[Item], now: datetime, report: Report) -> list[Item]:
    """The items that may be claimed now; one not due yet goes back to the queue for its time.

    A claim whose lease ran out was in flight when its sender died: it may have reached the provider.
    Transactional and security ones go again (same provider key, so the repeat collapses); marketing
    does not go twice -- it becomes UNCERTAIN, unless its sender's hand-off note shows it never left
    (:func:`app.pipeline.sending.never_handed`).
    """
    lease = claims.lease_seconds()
    due, uncertain = [], []
    for item in items:
        if claims.is_due(item.status, item.not_before, item.claimed_at, now, lease):
            (uncertain if item.status == SENDING and item.notification.type == "marketing" else due).append(item)
        elif item.status == PENDING:
            report.send_later(item, item.not_before)
            report.counts["rescheduled"] += 1
        elif item.status not in FINAL_STATUSES:
            report.counts["not-claimed"] += 1
    unsent = sending.never_handed([(item.id, item.claimed_at) for item in uncertain])
    due += [item for item in uncertain if item.id in unsent]
    uncertain = [item for item in uncertain if item.id not in unsent]
    if uncertain:
        mark_uncertain(uncertain, report, now)
    return due


def mark_uncertain(items: list[Item], report: Report, now: datetime) -> None:
    """SENDING -> UNCERTAIN for claims a dead sender left (conditional on the same claim: one winner)."""
    marked = []
    for item in items:
        if db.session.execute(
            update(Delivery)
            .where(Delivery.id == item.id, Delivery.status == SENDING, Delivery.claimed_at == item.claimed_at)
            .values(status=UNCERTAIN, updated_at=now),
            execution_options={"synchronize_session": False},
        ).rowcount:
            marked.append(item)
    if marked:
        db.session.execute(
            insert(DeliveryEvent),
            [
                {
                    "delivery_id": item.id,
                    "status": UNCERTAIN,
                    "created_at": now,
                    "detail": "its sender stopped mid-send; marketing is not sent twice",
                }
                for item in marked
            ],
        )
    db.session.commit()
    for item in marked:
        report.statuses[item.id] = UNCERTAIN
        report.count(item, "uncertain")


def _allowed(items: list[Item], now: datetime, report: Report) -> list[Item]:
    """Apply the origin's policy: SUPPRESS what it forbids, hand back what must wait, keep the rest."""
    verdicts = origin.verdicts(
        [
            origin.Target(
                i.id,
                i.notification.id,
                i.notification.origin,
                i.person.timezone,
                (i.person.attributes or {}).get("country"),
            )
            for i in items
        ],
        now,
    )
    suppress: dict[str, list[Item]] = {}
    allowed = []
    for item in items:
        verdict = verdicts[item.id]
        if verdict.action == origin.SEND:
            allowed.append(item)
        elif verdict.action == origin.WAIT:
            report.send_later(item, now + origin.PAUSE_RECHECK)
            report.counts["paused"] += 1
        else:
            suppress.setdefault(verdict.reason, []).append(item)
    for reason, group in suppress.items():
        suppress_items(group, reason, report, now)
    return allowed


def suppress_items(items: list[Item], reason: str, report: Report, now: datetime) -> None:
    """Due deliveries become SUPPRESSED with ``reason`` (conditional: a delivery sent meanwhile stays sent)."""
    by_id = {i.id: i for i in items}
    stopped = (
        db.session.execute(
            update(Delivery)
            .where(among(Delivery.id, by_id), claims.due(now))
            .values(status=SUPPRESSED, reason=reason, updated_at=now)
            .returning(Delivery.id),
            execution_options={"synchronize_session": False},
        )
        .scalars()
        .all()
    )
    if stopped:
        db.session.execute(
            insert(DeliveryEvent),
            [{"delivery_id": d, "status": SUPPRESSED, "detail": reason, "created_at": now} for d in stopped],
        )
    db.session.commit()
    for delivery_id in stopped:
        report.statuses[delivery_id] = SUPPRESSED
        report.count(by_id[delivery_id], f"suppressed:{reason}")


def send_in_app(channel: str, items: list[Item], renderers: Renderers, report: Report, now: datetime) -> None:
    """In-app in bulk; content is rendered only for a notification stored without it (an API send by template)."""
    entries, broken = [], []
    for item in items:
        note, rendered = item.notification, None
        if note.title is None and note.body is None:
            try:
                rendered = renderers.render(note, channel, item.person)
            except RenderError as error:
                broken.append((item, error))
                continue
        entries.append(InboxEntry(item.id, note.id, item.person.id, note.category, note.title, rendered))
    won = adapter_for(channel, current_app.config).send_many(entries, now)
    for item in items:
        if item.id in won:
            report.statuses[item.id] = "DELIVERED"
            report.count(item, f"sent:{channel}")
    if broken:
        _fail_unsendable(broken, report)


def _fail_unsendable(broken: list[tuple[Item, RenderError | Result]], report: Report) -> None:
    """Claim, then record as failed, what cannot be sent at all (a render error, no adapter for the channel)."""
    now = utcnow()
    won = claims.claim([item.id for item, _e in broken], now)
    db.session.commit()
    record([(_claimed(item, won[item.id]), _as_result(problem)) for item, problem in broken if item.id in won], report)


def _as_result(problem: RenderError | Result) -> Result:
    if isinstance(problem, Result):
        return problem
    return Result(Outcome.PERMANENT, "herald", error_code="render_error", detail=str(problem))


def _claimed(item: Item, attempts: int) -> Item:
    return Item(
        item.id, item.channel, "SENDING", item.not_before, item.claimed_at, attempts, item.notification, item.person
    )


def send_external(channel: str, items: list[Item], renderers: Renderers, report: Report) -> None:
    """Send through the channel's adapter a window at a time: claimed in one statement, streamed, recorded in bulk.

    :mod:`app.pipeline.sending` explains the window and why a crash still repeats only what was in flight.
    """
    config = current_app.config
    if channel_class(channel) is None:
        problem = Result(
            Outcome.PERMANENT,
            "herald",
            error_code="channel_not_configured",
            detail=f"no adapter is configured for {channel}",
        )
        _fail_unsendable([(item, problem) for item in items], report)
        return
    adapter = adapter_for(channel, config)
    size = max(sending.WINDOW, adapter.concurrent_sends)
    slot = None
    try:
        for start in range(0, len(items), size):
            claimed, claimed_at = _claim_window(items[start : start + size], report)
            if not claimed:
                continue
            slot = slot or _slot(channel, config)
            if slot is None:  # every worker slot of the channel is busy: wait (the attempt is given back)
                record([(item, _busy(channel, config)) for item in claimed], report)
                report.counts["busy"] += len(items) - start
                wait = utcnow() + timedelta(seconds=2)
            else:
                wait = _send_window(adapter, channel, claimed, claimed_at, renderers, report)
            if wait is not None:  # the provider said "not now": the rest waits with it, unclaimed
                for item in items[start + size :]:
                    report.send_later(item, wait)
                break
    finally:
        if slot is not None:
            release_slot(channel, slot)


def _claim_window(items: list[Item], report: Report) -> tuple[list[Item], datetime]:
    """Claim a window in one statement, its hand-off notes written before the commit makes it visible."""
    now = utcnow()
    won = claims.claim([i.id for i in items], now)
    sending.reserve(list(won), now)
    db.session.commit()  # the claim is durable before any provider call
    claimed = [_claimed(i, won[i.id]) for i in items if i.id in won]
    report.counts["not-claimed"] += len(items) - len(claimed)
    return claimed, now


def _slot(channel: str, config) -> str | None:
    """One of the channel's worker slots; none while Redis is down (the claimed window then waits, unsent)."""
    try:
        return acquire_slot(channel, config["CHANNEL_SLOTS"], config["DISPATCH_LEASE_SECONDS"])
    except RedisError:
        return None


def _busy(channel: str, config) -> Result:
    return Result(
        Outcome.WAIT,
        channel,
        error_code="channel_busy",
        detail=f"all {config['CHANNEL_SLOTS']} {channel} slots are busy",
        retry_after=1 + random.random(),
    )


def _send_window(
    adapter, channel: str, claimed: list[Item], claimed_at: datetime, renderers: Renderers, report: Report
) -> datetime | None:
    """Render, send and record one claimed window; returns when to come back if the provider asked to wait.

    A window that outlives half the lease renews the claim of what it has not handed out yet and goes on.
    """
    built = build_messages(channel, claimed, renderers)
    db.session.commit()
    record([(item, _as_result(m)) for item, m in built if isinstance(m, RenderError)], report)
    pairs = [(item, m) for item, m in built if not isinstance(m, RenderError)]
    while pairs:
        deadline = time.monotonic() + claims.lease_seconds() / 2
        sent = sending.send_window(adapter, channel, pairs, claimed_at, lambda done: record(done, report), deadline)
        if sent.wait is not None:
            return utcnow() + timedelta(seconds=sent.wait + random.random())
        previous, claimed_at = claimed_at, utcnow()
        kept = set(claims.renew([item.id for item, _m in sent.rest], previous, claimed_at))
        sending.reserve(list(kept), claimed_at)
        db.session.commit()
        pairs = [(item, m) for item, m in sent.rest if item.id in kept]
    return None


def _finish(report: Report) -> None:
    """Hand back what waits, move campaign counters, finish campaigns with nothing left to send."""
    for (priority, at), ids in report.later.items():
        deliver_later(ids, priority, at)
    if report.campaigns:
        pipe = get_redis().pipeline(transaction=False)
        for campaign_id, counts in report.campaigns.items():
            progress.add(pipe, campaign_id, counts)
        pipe.execute()
        for campaign_id in report.campaigns:
            progress.finish_if_complete(campaign_id)
