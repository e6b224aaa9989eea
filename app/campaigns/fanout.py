"""Campaign fan-out: one job turns ~1000 recipients into notifications, deliveries and sends, set-based.

A batch run is idempotent and may be repeated at any point (a worker killed
mid-batch, RQ's retry, a resume):

1. notifications are inserted ``ON CONFLICT DO NOTHING`` on the unique
   (campaign, recipient) index, deliveries on (notification, channel): a
   re-run inserts nothing twice;
2. routing is the pipeline's own pure ``route`` over facts loaded for the
   whole batch in a handful of queries;
3. in-app is one conditional UPDATE (PENDING -> DELIVERED, RETURNING the
   winners) plus pipelined realtime publishes; every other channel is
   claimed set-based (PENDING -> SENDING, RETURNING the winners), committed,
   then sent message by message through its adapter, then recorded in bulk.
   Claim, then send, then record -- as for single notifications, with the
   same provider idempotency key, so a claim left by a crash is re-driven
   after its lease, never sent twice.

Pause and cancel are read at the start of a batch and between channels. Progress
counters (Redis hash per campaign) only count rows this run changed.
"""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import and_, func, insert, or_, select, update

from app.audiences.filters import compile_filter
from app.campaigns import progress
from app.channels import DeviceTarget, Message, Outcome, Result, adapter_for, channel_class
from app.channels.guard import acquire_slot, release_slot
from app.delivery import routing
from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, PENDING, SENDING, SUPPRESSED
from app.delivery.priority import effective_priority
from app.delivery.rendering import CHANNEL_FIELDS, FIELD_LIMITS, RenderError, pick_variant
from app.delivery.unsubscribe import list_unsubscribe_headers, unsubscribe_token
from app.extensions import db
from app.models.bulk import insert_ignoring_conflicts
from app.models import Campaign, CampaignBatch, Delivery, DeliveryEvent, Device, Notification, Preference, Recipient, \
    Suppression, Template
from app.models.campaigns import BATCH_CANCELLED, BATCH_DONE, BATCH_PENDING, CANCELLED, FINISHED, PAUSED, RUNNING
from app.models.notifications import new_notification_id
from app.models.types import utcnow
from app.realtime.publish import publish_to_user
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)

CHANNEL_ORDER = ("in_app", "push", "web_push", "sms", "email")
ENDED = "campaign_ended"
CANCELLED_REASON = "campaign_cancelled"
# SQLite allows 32766 bound parameters per statement; deliveries have 12 columns.
DELIVERY_CHUNK = 2000
# External sends are claimed, sent and recorded this many at a time (the most a crash can leave SENDING).
SEND_CHUNK = 100


# -- rendering: compiled once per template version and channel, rendered per recipient --------

_text_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_html_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


class CompiledVariant:
    """A channel variant parsed once; ``render`` gives the same fields and errors as ``render_fields``.

    ``render_fields`` parses each field on every call, which for a million
    recipients is most of the work; here a batch parses once.
    """

    def __init__(self, channel: str, variant: dict):
        self.channel = channel
        self.fields: list[tuple[str, object]] = []
        for field in CHANNEL_FIELDS[channel]:
            source = variant.get(field)
            if source is None:
                if not (field == "text" and channel == "email"):
                    self.fields.append((field, RenderError(channel, field, "missing")))
                continue
            try:
                compiled = (_html_env if field == "html" else _text_env).from_string(source)
            except TemplateSyntaxError as error:
                compiled = RenderError(channel, field, error.message or "syntax error", error.lineno)
            self.fields.append((field, compiled))

    def render(self, context: dict) -> dict[str, str]:
        rendered = {}
        for field, compiled in self.fields:
            if isinstance(compiled, RenderError):
                raise compiled
            try:
                value = compiled.render(context)
            except UndefinedError as error:
                raise RenderError(self.channel, field, error.message or "undefined variable") from None
            except TemplateError as error:
                raise RenderError(self.channel, field, str(error)) from None
            if not value.strip() and field != "html":
                raise RenderError(self.channel, field, "rendered empty")
            limit = FIELD_LIMITS.get((self.channel, field))
            if limit and len(value) > limit:
                raise RenderError(self.channel, field, f"{len(value)} characters, over the limit of {limit}")
            rendered[field] = value
        return rendered


class VersionRenderer:
    """Picks the variant for a (channel, locale) like ``pick_variant`` and keeps it compiled."""

    def __init__(self, variants: dict, default_locale: str):
        self.variants, self.default_locale = variants, default_locale
        self._compiled: dict[tuple[str, str | None], CompiledVariant | None] = {}

    def render(self, channel: str, locale: str | None, context: dict) -> dict[str, str]:
        cache_key = (channel, locale)
        if cache_key not in self._compiled:
            variant = pick_variant(self.variants, channel, locale, self.default_locale)
            self._compiled[cache_key] = CompiledVariant(channel, variant) if variant else None
        compiled = self._compiled[cache_key]
        if compiled is None:
            raise RenderError(channel, "template", f"the template has no {channel} variant")
        return compiled.render(context)


_renderers: dict[tuple[int, int], VersionRenderer] = {}


def renderer_for(template: Template, version_number: int) -> VersionRenderer:
    """Versions are immutable, so a worker keeps each one compiled for as long as it lives."""
    cache_key = (template.id, version_number)
    if cache_key not in _renderers:
        version = template.version(version_number)
        if version is None:
            raise LookupError(f"template {template.key!r} has no version {version_number}")
        if len(_renderers) > 64:
            _renderers.clear()
        _renderers[cache_key] = VersionRenderer(version.variants, template.default_locale)
    return _renderers[cache_key]


# -- set-based writes --------------------------------------------------------------------------

# -- loading the batch -------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    id: int
    external_id: str
    email: str | None
    phone: str | None
    timezone: str | None
    locale: str | None
    attributes: dict
    hard_stop: bool
    quiet_start: object
    quiet_end: object

    def context(self, notification: dict) -> dict:
        """The same variables ``jobs.delivery.render_context`` offers templates."""
        return {
            "recipient": {"id": self.external_id, "email": self.email, "phone": self.phone, "locale": self.locale,
                          "timezone": self.timezone, "attributes": self.attributes or {}},
            "data": notification.get("data") or {},
            "notification": {"id": notification["id"], "type": notification["type"], "category": notification["category"],
                             "title": notification.get("title") or "", "body": notification.get("body") or ""},
        }


PERSON_COLUMNS = (Recipient.id, Recipient.external_id, Recipient.email, Recipient.phone, Recipient.timezone,
                  Recipient.locale, Recipient.attributes, Recipient.hard_stop, Recipient.quiet_start, Recipient.quiet_end)


def audience_condition(campaign: Campaign, now: datetime):
    return compile_filter(campaign.audience_filter, db.session.get_bind().dialect.name, now)


def load_batch_people(campaign: Campaign, batch: CampaignBatch, now: datetime) -> list[Person]:
    conditions = [audience_condition(campaign, now), Recipient.id >= batch.first_id, Recipient.id <= batch.last_id]
    if batch.by_zone:
        conditions.append(Recipient.timezone.is_(None) if batch.zone is None else Recipient.timezone == batch.zone)
    rows = db.session.execute(select(*PERSON_COLUMNS).where(*conditions).order_by(Recipient.id)).all()
    return [Person(*row) for row in rows]


def load_people(ids: list[int]) -> dict[int, Person]:
    rows = db.session.execute(select(*PERSON_COLUMNS).where(Recipient.id.in_(ids))).all()
    return {row[0]: Person(*row) for row in rows}


def load_facts(people: list[Person], channels: list[str], marketing: bool, now: datetime) -> dict[int, routing.RecipientFacts]:
    """Routing facts for the whole batch: a query each for preferences, devices and suppressions."""
    ids = [p.id for p in people]
    preferences: dict[int, dict] = defaultdict(dict)
    for recipient_id, channel, category, enabled in db.session.execute(
        select(Preference.recipient_id, Preference.channel, Preference.category, Preference.enabled)
        .where(Preference.recipient_id.in_(ids), Preference.channel.in_(channels))
    ):
        preferences[recipient_id][(channel, category)] = enabled
    platforms: dict[int, set[str]] = defaultdict(set)
    if {"push", "web_push"} & set(channels):
        for recipient_id, platform in db.session.execute(
            select(Device.recipient_id, Device.platform).where(Device.recipient_id.in_(ids), Device.active.is_(True)).distinct()
        ):
            platforms[recipient_id].add(platform)
    suppressed: set[tuple[str, str]] = set()
    lookups = [(c, [getattr(p, field) for p in people if getattr(p, field)])
               for c, field in (("email", "email"), ("sms", "phone")) if c in channels]
    lookups = [(c, addresses) for c, addresses in lookups if addresses]
    if lookups:
        suppressed = set(db.session.execute(select(Suppression.channel, Suppression.address).where(
            or_(*[and_(Suppression.channel == c, Suppression.address.in_(addresses)) for c, addresses in lookups])
        )).all())
    recent = [0] * len(people)
    cap = current_app.config["MARKETING_CAP_PER_HOUR"]
    if marketing and cap > 0:
        pipe = get_redis().pipeline(transaction=False)
        hour_ago = (now - timedelta(hours=1)).timestamp()
        for person in people:
            pipe.zcount(key("cap", person.id), hour_ago, "+inf")
        recent = pipe.execute()
    facts = {}
    for person, marketing_recent in zip(people, recent):
        reachable = routing.reachable_channels(person.email, person.phone, platforms[person.id])
        blocked = {c for c, a in (("email", person.email), ("sms", person.phone)) if a and (c, a) in suppressed}
        facts[person.id] = routing.RecipientFacts(
            hard_stop=person.hard_stop, timezone=person.timezone, quiet_start=person.quiet_start,
            quiet_end=person.quiet_end, preferences=preferences.get(person.id, {}), reachable=reachable,
            suppressed=frozenset(blocked), marketing_sent_last_hour=int(marketing_recent),
        )
    return facts


# -- the batch ---------------------------------------------------------------------------------

@dataclass
class Context:
    """What every step of one campaign run needs, loaded once."""

    campaign: Campaign
    template: Template
    renderer: VersionRenderer
    channels: list[str]
    note: routing.NotificationFacts
    priority: str


def campaign_context(campaign: Campaign) -> Context:
    template = db.session.get(Template, campaign.template_id)
    channels = [c for c in CHANNEL_ORDER if c in campaign.channels]
    priority = effective_priority(template.type, "low" if template.type == "marketing" else "normal")
    return Context(campaign, template, renderer_for(template, campaign.template_version), channels,
                   routing.NotificationFacts(template.type, template.category, priority, tuple(channels)), priority)


def campaign_status(campaign_id: int) -> str | None:
    """Read live (not from the session's identity map), so a pause lands between channels."""
    return db.session.execute(select(Campaign.status).where(Campaign.id == campaign_id)).scalar()


def run_batch(campaign_id: int, batch_id: int) -> str:
    """Fan one batch out. Returns what happened, for logs and tests."""
    now = utcnow()
    batch = db.session.get(CampaignBatch, batch_id)
    campaign = db.session.get(Campaign, campaign_id)
    if batch is None or campaign is None or batch.campaign_id != campaign_id:
        return "missing"
    if batch.status != BATCH_PENDING:
        return "already-" + batch.status
    if campaign.status == CANCELLED:
        _close_batch(batch, BATCH_CANCELLED)
        return "cancelled"
    if campaign.status == PAUSED:
        db.session.rollback()
        return "paused"
    if campaign.status != RUNNING:
        return "not-running"
    ctx = campaign_context(campaign)
    people = load_batch_people(campaign, batch, now)
    ended = campaign.ends_at is not None and now >= campaign.ends_at
    if people:
        notification_ids = create_rows(ctx, people, now, ended)
        outcome = send_pending(ctx, people_by_id={p.id: p for p in people}, notification_ids=notification_ids)
        if outcome == "waiting":  # every slot of a channel is busy: the whole batch comes back (it is idempotent)
            from jobs.campaigns import enqueue_batch

            enqueue_batch(campaign_id, batch_id, utcnow() + timedelta(seconds=1 + random.random()))
            return outcome
        if outcome == "cancelled":
            _close_batch(batch, BATCH_CANCELLED)
            finish_if_complete(campaign_id)
            return outcome
        if outcome != "sent":
            return outcome  # paused: the batch stays pending and resume enqueues it again
    _close_batch(batch, BATCH_DONE)
    finish_if_complete(campaign_id)
    return "done"


def create_rows(ctx: Context, people: list[Person], now: datetime, ended: bool) -> dict[int, str]:
    """Insert the batch's notifications and routed deliveries (idempotently); returns recipient -> notification id."""
    campaign, template = ctx.campaign, ctx.template
    if ended:
        decisions = {p.id: [routing.Decision(c, routing.SUPPRESS, ENDED) for c in ctx.channels] for p in people}
    else:
        facts = load_facts(people, ctx.channels, template.type == "marketing", now)
        cap = current_app.config["MARKETING_CAP_PER_HOUR"]
        decisions = {p.id: routing.route(ctx.note, facts[p.id], now, cap) for p in people}

    notification_rows, failures = [], {}
    for person in people:
        row = {"id": new_notification_id(), "recipient_id": person.id, "type": template.type,
               "category": template.category, "priority": ctx.priority, "template_key": template.key,
               "template_version": campaign.template_version, "title": None, "body": None, "data": {},
               "channels": ctx.channels, "status": "routed", "created_at": now, "routed_at": now,
               "campaign_id": campaign.id}
        if "in_app" in ctx.channels:
            # The inbox shows the stored title/body, so the in-app variant is rendered into the row.
            try:
                content = ctx.renderer.render("in_app", person.locale, person.context(row))
                row["title"], row["body"] = content["title"], content["body"]
            except RenderError as error:
                failures[(person.id, "in_app")] = str(error)
        notification_rows.append(row)
    # Rows this run created carry this run's ``now``: that tells them apart from a previous run's.
    inserted = insert_ignoring_conflicts(Notification, notification_rows, ["campaign_id", "recipient_id"])
    if inserted == len(notification_rows):
        ids = {row["recipient_id"]: row["id"] for row in notification_rows}
    else:  # a re-run: the first run's rows and ids stand
        existing = db.session.execute(select(Notification.recipient_id, Notification.id, Notification.created_at).where(
            Notification.campaign_id == campaign.id, Notification.recipient_id.in_([p.id for p in people]))).all()
        ids = {recipient_id: notification_id for recipient_id, notification_id, _at in existing}
        inserted = sum(1 for _r, _n, created_at in existing if created_at == now)

    delivery_rows = []
    for person in people:
        for decision in decisions[person.id]:
            status, reason = SUPPRESSED if decision.action == routing.SUPPRESS else PENDING, decision.reason
            error = failures.get((person.id, decision.channel))
            if error and status == PENDING:
                status, reason = FAILED, None
            delivery_rows.append({"notification_id": ids[person.id], "channel": decision.channel, "status": status,
                                  "reason": reason, "not_before": decision.not_before, "attempts": 0,
                                  "error_code": "render_error" if status == FAILED else None,
                                  "last_error": error if status == FAILED else None,
                                  "created_at": now, "updated_at": now})
    created = sum(insert_ignoring_conflicts(Delivery, delivery_rows[start:start + DELIVERY_CHUNK], ["notification_id", "channel"])
                  for start in range(0, len(delivery_rows), DELIVERY_CHUNK))
    counts: dict[str, int] = defaultdict(int)
    deferred: dict[datetime, list[int]] = defaultdict(list)
    if created:
        query = select(Delivery.id, Delivery.status, Delivery.reason, Delivery.last_error, Delivery.not_before).where(
            Delivery.notification_id.in_(list(ids.values())), Delivery.created_at == now)
        events = []
        for delivery_id, status, reason, last_error, not_before in db.session.execute(query):
            if status == SUPPRESSED:
                counts[f"suppressed:{reason}"] += 1
                events.append({"delivery_id": delivery_id, "status": SUPPRESSED, "detail": reason, "created_at": now})
            elif status == FAILED:
                counts["failed"] += 1
                events.append({"delivery_id": delivery_id, "status": FAILED, "detail": f"render_error: {last_error}",
                               "created_at": now})
            elif not_before is not None:
                deferred[not_before].append(delivery_id)
                events.append({"delivery_id": delivery_id, "status": PENDING,
                               "detail": f"deferred until {not_before.isoformat()} (quiet_hours)", "created_at": now})
        if events:
            db.session.execute(insert(DeliveryEvent), events)
    db.session.commit()

    pipe = get_redis().pipeline(transaction=False)
    progress.add(pipe, campaign.id, {**counts, "notified": inserted} if inserted else counts)
    if created and template.type == "marketing":
        hour_ago = (now - timedelta(hours=1)).timestamp()
        for person in people:
            if any(d.action != routing.SUPPRESS for d in decisions[person.id]):
                cap_key = key("cap", person.id)
                pipe.zadd(cap_key, {ids[person.id]: now.timestamp()})  # member = notification: re-runs count once
                pipe.zremrangebyscore(cap_key, "-inf", hour_ago)
                pipe.expire(cap_key, 3600)
    pipe.execute()
    schedule_deferred(campaign.id, deferred)
    return ids


def schedule_deferred(campaign_id: int, deferred: dict[datetime, list[int]]) -> None:
    """Quiet-hours deliveries go in one job per minute of release (and per 1000), never one job per delivery."""
    from jobs.campaigns import enqueue_deliveries

    by_minute: dict[datetime, list[int]] = defaultdict(list)
    for at, delivery_ids in deferred.items():
        minute = at.replace(second=0, microsecond=0) + (timedelta(minutes=1) if at.second or at.microsecond else timedelta(0))
        by_minute[minute].extend(delivery_ids)
    for at, delivery_ids in sorted(by_minute.items()):
        for start in range(0, len(delivery_ids), 1000):
            enqueue_deliveries(campaign_id, delivery_ids[start:start + 1000], at)


# -- sending -----------------------------------------------------------------------------------

def _stopped(campaign_id: int) -> str | None:
    status = campaign_status(campaign_id)
    return status if status in (PAUSED, CANCELLED) else None


def send_pending(ctx: Context, people_by_id: dict[int, Person], notification_ids: dict[int, str] | None = None,
                 delivery_ids: list[int] | None = None) -> str:
    """Send the batch's due PENDING deliveries (or the given ones), channel by channel.

    Returns "sent", "paused", "cancelled" or "waiting" (a channel was busy; the caller's job was re-queued).
    """
    campaign_id = ctx.campaign.id
    for channel in ctx.channels:
        stopped = _stopped(campaign_id)
        if stopped == CANCELLED:
            cancel_pending(campaign_id, notification_ids, delivery_ids)
            return "cancelled"
        if stopped:
            return "paused"
        now = utcnow()
        if ctx.campaign.ends_at is not None and now >= ctx.campaign.ends_at:
            end_pending(campaign_id, notification_ids, delivery_ids, now)
            return "sent"
        scope = (Delivery.notification_id.in_(list(notification_ids.values())) if notification_ids is not None
                 else Delivery.id.in_(delivery_ids))
        if channel == "in_app":
            send_in_app(ctx, scope, now)
        elif not send_external(ctx, channel, scope, people_by_id, now):
            return "waiting"
    return "sent"


def _due(now: datetime):
    lease = current_app.config["DISPATCH_LEASE_SECONDS"]
    return or_(
        and_(Delivery.status == PENDING, or_(Delivery.not_before.is_(None), Delivery.not_before <= now)),
        and_(Delivery.status == SENDING, Delivery.claimed_at < now - timedelta(seconds=lease)),
    )


def send_in_app(ctx: Context, scope, now: datetime) -> int:
    """The in-app send is a database row: one conditional UPDATE for the batch, then pipelined publishes."""
    won = db.session.execute(
        update(Delivery).where(scope, Delivery.channel == "in_app", _due(now))
        .values(status=DELIVERED, provider="herald", attempts=Delivery.attempts + 1, claimed_at=now,
                dispatched_at=now, delivered_at=now, updated_at=now)
        .returning(Delivery.id, Delivery.notification_id)
    ).all()
    if not won:
        db.session.commit()
        return 0
    notification_ids = [n for _d, n in won]
    db.session.execute(update(Notification).where(Notification.id.in_(notification_ids), Notification.inbox_at.is_(None))
                       .values(inbox_at=now))
    db.session.execute(insert(DeliveryEvent), [{"delivery_id": d, "status": DELIVERED, "detail": "inbox", "created_at": now}
                                              for d, _n in won])
    rows = db.session.execute(select(Notification.id, Notification.recipient_id, Notification.title)
                              .where(Notification.id.in_(notification_ids))).all()
    db.session.commit()
    pipe = get_redis().pipeline(transaction=False)
    for notification_id, recipient_id, title in rows:
        publish_to_user(recipient_id, "notification", {"id": notification_id, "title": title,
                                                       "category": ctx.template.category},
                        event_id=notification_id, pipeline=pipe)
    progress.add(pipe, ctx.campaign.id, {"sent:in_app": len(won)})
    pipe.execute()
    return len(won)


def send_external(ctx: Context, channel: str, scope, people_by_id: dict[int, Person], now: datetime) -> bool:
    """Claim this channel's due deliveries chunk by chunk, send each through the adapter, record each chunk.

    Chunks bound what a crash can leave ambiguous: at most ``SEND_CHUNK``
    deliveries are SENDING at any moment, and those are re-driven after their
    lease with the same provider idempotency key. False = every slot of the
    channel is busy; nothing was claimed, try later.
    """
    adapter_class = channel_class(channel)
    candidates = db.session.execute(select(Delivery.id).where(scope, Delivery.channel == channel, _due(now))).scalars().all()
    db.session.rollback()
    if not candidates:
        return True
    config = current_app.config
    slot = None
    if adapter_class is not None and adapter_class.external:
        # One slot for the whole batch: the same fault isolation as single sends, at one Redis call per batch.
        slot = acquire_slot(channel, config["CHANNEL_SLOTS"], config["DISPATCH_LEASE_SECONDS"])
        if slot is None:
            return False
    try:
        for start in range(0, len(candidates), SEND_CHUNK):
            chunk = candidates[start:start + SEND_CHUNK]
            claim_at = utcnow()
            claimed = db.session.execute(
                update(Delivery).where(Delivery.id.in_(chunk), _due(claim_at))
                .values(status=SENDING, claimed_at=claim_at, attempts=Delivery.attempts + 1, updated_at=claim_at)
                .returning(Delivery.id, Delivery.notification_id, Delivery.attempts)
            ).all()
            db.session.commit()  # the claim is durable before any provider call
            if not claimed:
                continue
            retry_after = _send_claimed(ctx, channel, claimed, people_by_id, adapter_class)
            if retry_after is not None:  # the provider said "not now": the rest waits with it, unclaimed
                from jobs.campaigns import enqueue_deliveries

                rest = candidates[start + SEND_CHUNK:]
                for offset in range(0, len(rest), 1000):
                    enqueue_deliveries(ctx.campaign.id, rest[offset:offset + 1000],
                                       utcnow() + timedelta(seconds=retry_after + random.random()))
                break
        return True
    finally:
        if slot is not None:
            release_slot(channel, slot)


def _messages(ctx: Context, channel: str, claimed, people_by_id: dict[int, Person]):
    """(delivery id, Message or RenderError) for every claimed delivery, built from rows loaded in bulk."""
    notification_ids = [n for _d, n, _a in claimed]
    notes = {row.id: row for row in db.session.execute(select(
        Notification.id, Notification.recipient_id, Notification.type, Notification.category, Notification.priority,
        Notification.title, Notification.body, Notification.data, Notification.collapse_key,
    ).where(Notification.id.in_(notification_ids))).all()}
    missing = [n.recipient_id for n in notes.values() if n.recipient_id not in people_by_id]
    if missing:
        people_by_id = {**people_by_id, **load_people(missing)}
    adapter_class = channel_class(channel)
    devices: dict[int, list[DeviceTarget]] = defaultdict(list)
    if adapter_class is not None and adapter_class.platforms:
        for d in db.session.execute(select(Device).where(
            Device.recipient_id.in_({n.recipient_id for n in notes.values()}), Device.active.is_(True),
            Device.platform.in_(adapter_class.platforms)).order_by(Device.id)).scalars():
            devices[d.recipient_id].append(DeviceTarget(d.id, d.platform, d.token, d.p256dh, d.auth))
    config = current_app.config
    for delivery_id, notification_id, _attempts in claimed:
        note = notes[notification_id]
        person = people_by_id[note.recipient_id]
        row = {"id": note.id, "type": note.type, "category": note.category, "title": note.title, "body": note.body,
               "data": note.data}
        try:
            content = ctx.renderer.render(channel, person.locale, person.context(row))
        except RenderError as error:
            yield delivery_id, error
            continue
        headers = {}
        if channel == "email" and note.type == "marketing":
            token = unsubscribe_token(config["SECRET_KEY"], person.external_id, note.category)
            headers = list_unsubscribe_headers(f"{config['BASE_URL']}/unsubscribe/{token}")
        address_field = adapter_class.address_field if adapter_class else None
        yield delivery_id, Message(
            delivery_id=delivery_id, recipient_id=person.id, notification_id=note.id, channel=channel,
            idempotency_key=f"herald-{note.id}-{channel}", recipient_external_id=person.external_id,
            notification_type=note.type, category=note.category, priority=note.priority, content=content,
            data=note.data or {}, address=getattr(person, address_field) if address_field else None,
            collapse_key=note.collapse_key, headers=headers, devices=tuple(devices.get(person.id, ())),
        )


def _call_adapter(app, adapter, channel: str, message: Message) -> Result:
    with app.app_context():
        try:
            return adapter.send(message)
        except Exception as error:  # an adapter bug must not lose the delivery: it retries
            log.exception("adapter %s raised for delivery %s", channel, message.delivery_id)
            return Result(Outcome.TRANSIENT, channel, error_code="adapter_error", detail=repr(error)[:500])


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(size: int) -> ThreadPoolExecutor:
    """One thread pool per worker process and size, reused across batches."""
    if size not in _pools:
        _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"campaign-send-{size}")
    return _pools[size]


def _send_claimed(ctx: Context, channel: str, claimed, people_by_id: dict[int, Person], adapter_class) -> float | None:
    """Send claimed deliveries and record the outcomes; returns a delay when the provider asked to wait.

    An adapter whose ``send`` is thread-safe (e.g. a pooled HTTP client) raises
    ``Channel.concurrent_sends``: then up to N messages of the chunk are in flight
    at once, so a provider's round trip is not paid N times in a row. The default
    of 1 (SMTP's single connection) sends one by one.
    """
    from jobs.delivery import record

    config = current_app.config
    adapter = adapter_for(channel, config) if adapter_class is not None else None
    successes, failures, waits = [], [], []
    items = list(_messages(ctx, channel, claimed, people_by_id))
    for delivery_id, item in items:
        if isinstance(item, RenderError):
            failures.append((delivery_id, Result(Outcome.PERMANENT, "herald", error_code="render_error", detail=str(item))))
        elif adapter is None:
            failures.append((delivery_id, Result(Outcome.PERMANENT, "herald", error_code="channel_not_configured",
                                                 detail=f"no adapter is configured for {channel}")))
    messages = [(d, m) for d, m in items if isinstance(m, Message)] if adapter is not None else []
    concurrency = max(1, adapter_class.concurrent_sends)
    app = current_app._get_current_object()
    if concurrency > 1 and len(messages) > 1:
        futures = [(d, _pool(concurrency).submit(_call_adapter, app, adapter, channel, m)) for d, m in messages]
        results = [(d, future.result()) for d, future in futures]
    else:
        results = []
        for delivery_id, message in messages:
            if results and results[-1][1].outcome is Outcome.WAIT:  # "not now": the rest of the chunk waits, unsent
                results.append((delivery_id, results[-1][1]))
                continue
            results.append((delivery_id, _call_adapter(app, adapter, channel, message)))
    for delivery_id, result in results:
        if result.outcome in (Outcome.DISPATCHED, Outcome.DELIVERED):
            successes.append((delivery_id, result))
        elif result.outcome is Outcome.WAIT:
            waits.append((delivery_id, result))
        else:
            failures.append((delivery_id, result))
    now = utcnow()
    if successes:
        db.session.execute(update(Delivery), [{
            "id": delivery_id, "status": DELIVERED if r.outcome is Outcome.DELIVERED else DISPATCHED,
            "provider": r.provider, "provider_message_id": r.provider_message_id, "dispatched_at": now,
            "delivered_at": now if r.outcome is Outcome.DELIVERED else None, "last_error": None, "error_code": None,
            "updated_at": now,
        } for delivery_id, r in successes])
        db.session.execute(insert(DeliveryEvent), [{
            "delivery_id": delivery_id, "status": DELIVERED if r.outcome is Outcome.DELIVERED else DISPATCHED,
            "detail": r.detail or r.provider_message_id, "created_at": now,
        } for delivery_id, r in successes])
    retry_after = None
    if waits:
        # Nothing was tried for these: give the attempt back, as ``record`` does for a WAIT.
        retry_after = max((r.retry_after or 1.0 for _d, r in waits), default=1.0)
        waiting = {d for d, _r in waits}
        db.session.execute(update(Delivery), [{
            "id": delivery_id, "status": PENDING, "attempts": max(0, attempts - 1),
            "not_before": now + timedelta(seconds=retry_after), "updated_at": now,
        } for delivery_id, _n, attempts in claimed if delivery_id in waiting])
    db.session.commit()
    failed = 0
    for delivery_id, result in failures:  # the single-send policy: backoff, dead letter, suppression, dead devices
        if record(delivery_id, result, ctx.priority) == FAILED:
            failed += 1
    pipe = get_redis().pipeline(transaction=False)
    progress.add(pipe, ctx.campaign.id, {f"sent:{channel}": len(successes), "failed": failed})
    pipe.execute()
    if waits:
        from jobs.campaigns import enqueue_deliveries

        enqueue_deliveries(ctx.campaign.id, [d for d, _r in waits], now + timedelta(seconds=retry_after + random.random()))
    return retry_after


def send_deliveries(campaign_id: int, delivery_ids: list[int]) -> str:
    """Send given deliveries of a campaign (quiet hours ended, a provider asked to wait). Idempotent."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        return "missing"
    if campaign.status == CANCELLED:
        cancel_pending(campaign_id, None, delivery_ids)
        return "cancelled"
    if campaign.status == PAUSED:
        from jobs.campaigns import enqueue_deliveries

        enqueue_deliveries(campaign_id, delivery_ids, utcnow() + timedelta(seconds=30))  # checked again later
        return "paused"
    ctx = campaign_context(campaign)
    outcome = send_pending(ctx, people_by_id={}, delivery_ids=delivery_ids)
    if outcome == "waiting":
        from jobs.campaigns import enqueue_deliveries

        enqueue_deliveries(campaign_id, delivery_ids, utcnow() + timedelta(seconds=1 + random.random()))
    finish_if_complete(campaign_id)
    return outcome


# -- stopping ----------------------------------------------------------------------------------

def _suppress_pending(campaign_id: int, notification_ids: dict[int, str] | None, delivery_ids: list[int] | None,
                      reason: str, now: datetime) -> int:
    if notification_ids is not None:
        scope = Delivery.notification_id.in_(list(notification_ids.values()))
    elif delivery_ids is not None:
        scope = Delivery.id.in_(delivery_ids)
    else:
        scope = Delivery.notification_id.in_(select(Notification.id).where(Notification.campaign_id == campaign_id))
    stopped = db.session.execute(
        update(Delivery).where(scope, Delivery.status == PENDING)
        .values(status=SUPPRESSED, reason=reason, updated_at=now).returning(Delivery.id)
    ).scalars().all()
    if stopped:
        db.session.execute(insert(DeliveryEvent), [{"delivery_id": d, "status": SUPPRESSED, "detail": reason,
                                                    "created_at": now} for d in stopped])
    db.session.commit()
    if stopped:
        pipe = get_redis().pipeline(transaction=False)
        progress.add(pipe, campaign_id, {f"suppressed:{reason}": len(stopped)})
        pipe.execute()
    return len(stopped)


def cancel_pending(campaign_id: int, notification_ids=None, delivery_ids=None) -> int:
    """Nothing unsent goes out after a cancel: PENDING deliveries become SUPPRESSED campaign_cancelled."""
    return _suppress_pending(campaign_id, notification_ids, delivery_ids, CANCELLED_REASON, utcnow())


def end_pending(campaign_id: int, notification_ids, delivery_ids, now: datetime) -> int:
    return _suppress_pending(campaign_id, notification_ids, delivery_ids, ENDED, now)


def _close_batch(batch: CampaignBatch, status: str) -> None:
    db.session.execute(update(CampaignBatch).where(CampaignBatch.id == batch.id, CampaignBatch.status == BATCH_PENDING)
                       .values(status=status, done_at=utcnow()))
    db.session.commit()


def finish_if_complete(campaign_id: int) -> bool:
    """A running campaign is finished once no batch waits and no delivery of it is still to be sent."""
    if db.session.scalar(select(CampaignBatch.id).where(CampaignBatch.campaign_id == campaign_id,
                                                        CampaignBatch.status == BATCH_PENDING).limit(1)) is not None:
        return False
    unsent = db.session.scalar(select(Delivery.id).join(Notification, Notification.id == Delivery.notification_id).where(
        Notification.campaign_id == campaign_id, Delivery.status.in_((PENDING, SENDING))).limit(1))
    if unsent is not None:
        return False
    now = utcnow()
    done = db.session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status == RUNNING)
                              .values(status=FINISHED, finished_at=now, updated_at=now)).rowcount
    db.session.commit()
    if done:
        progress.set_status(campaign_id, FINISHED)
    return bool(done)


def delivery_counts(campaign_id: int) -> dict[str, int]:
    """The counters rebuilt from the database (when Redis lost them): same field names."""
    counts: dict[str, int] = {}
    rows = db.session.execute(
        select(Delivery.channel, Delivery.status, Delivery.reason, func.count())
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Notification.campaign_id == campaign_id)
        .group_by(Delivery.channel, Delivery.status, Delivery.reason)
    ).all()
    for channel, status, reason, count in rows:
        if status in (DISPATCHED, DELIVERED):
            field = f"sent:{channel}"
        elif status == SUPPRESSED:
            field = f"suppressed:{reason}"
        elif status == FAILED:
            field = "failed"
        else:
            continue
        counts[field] = counts.get(field, 0) + count
    counts["notified"] = db.session.scalar(select(func.count()).select_from(Notification)
                                           .where(Notification.campaign_id == campaign_id)) or 0
    return counts

