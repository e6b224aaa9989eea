"""A chunk's deliveries as plain rows, and their messages rendered through the one compiled-template cache.

Templates render through :func:`app.delivery.rendering.renderer_for` (each
version compiled once per worker); a notification sent with a literal
title/body renders through the same :class:`VersionRenderer`, built from
:func:`inline_variant` (the caller's text travels as variables, never as
template source).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import NamedTuple

from flask import current_app
from sqlalchemy import select

from app.channels import DeviceTarget, Message, channel_class, offers_one_click_unsubscribe
from app.delivery.rendering import CHANNEL_FIELDS, RenderError, VersionRenderer, inline_variant, renderer_for
from app.delivery.tracking import track
from app.delivery.unsubscribe import list_unsubscribe_headers, unsubscribe_token
from app.extensions import db
from app.models import Delivery, Device, Notification, Recipient, Template
from app.models.bulk import among
from app.pipeline.facts import PERSON_COLUMNS, Person, render_context


class Item(NamedTuple):
    """One delivery of a chunk with its notification and recipient, loaded in one query for the chunk."""

    id: int
    channel: str
    status: str
    not_before: datetime | None
    claimed_at: datetime | None
    attempts: int
    notification: object  # a row with the Notification columns in NOTE_COLUMNS
    person: Person

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and re-drives (``Delivery.provider_idempotency_key``), so a provider drops a repeat."""
        return f"herald-{self.notification.id}-{self.channel}"


NOTE_COLUMNS = (
    Notification.id,
    Notification.type,
    Notification.category,
    Notification.priority,
    Notification.template_key,
    Notification.template_version,
    Notification.title,
    Notification.body,
    Notification.data,
    Notification.collapse_key,
    Notification.origin,
)
DELIVERY_COLUMNS = (
    Delivery.id,
    Delivery.channel,
    Delivery.status,
    Delivery.not_before,
    Delivery.claimed_at,
    Delivery.attempts,
)


def load_items(delivery_ids: list[int]) -> list[Item]:
    rows = db.session.execute(
        select(*DELIVERY_COLUMNS, *NOTE_COLUMNS, *PERSON_COLUMNS)
        .join(Notification, Notification.id == Delivery.notification_id)
        .join(Recipient, Recipient.id == Notification.recipient_id)
        .where(among(Delivery.id, delivery_ids))
        .order_by(Delivery.id)
    ).all()
    d, n = len(DELIVERY_COLUMNS), len(NOTE_COLUMNS)
    return [Item(*row[:d], notification=_Note(*row[d : d + n]), person=Person(*row[d + n :])) for row in rows]


class _Note(NamedTuple):
    id: str
    type: str
    category: str
    priority: str
    template_key: str | None
    template_version: int | None
    title: str | None
    body: str | None
    data: dict | None
    collapse_key: str | None
    origin: str | None


_inline: dict[tuple[bool, bool], VersionRenderer] = {}


def inline_renderer(title: str | None, body: str | None) -> VersionRenderer:
    """The compiled renderer of literal title/body content: four shapes in all, each compiled once."""
    shape = (bool(title), bool(body))
    if shape not in _inline:
        variants = {channel: inline_variant(channel, title, body) for channel in CHANNEL_FIELDS}
        _inline[shape] = VersionRenderer({"*": variants}, "*")
    return _inline[shape]


class Renderers:
    """The renderer of each notification of a chunk: templates looked up once per chunk, compiled once per worker."""

    def __init__(self):
        self._templates: dict[str, Template | None] = {}

    def render(self, note, channel: str, person: Person) -> dict[str, str]:
        context = render_context(person, note)
        if note.template_key:
            try:
                return self._template_renderer(note, channel).render(channel, person.locale, context)
            except RenderError as error:
                if error.field != "template" or not (note.title or note.body):
                    raise
        elif not (note.title or note.body):
            raise RenderError(channel, "template", "the notification has neither a template nor a title/body")
        return inline_renderer(note.title, note.body).render(channel, person.locale, context)

    def _template_renderer(self, note, channel: str) -> VersionRenderer:
        if note.template_key not in self._templates:
            self._templates[note.template_key] = db.session.scalar(
                select(Template).where(Template.key == note.template_key)
            )
        template = self._templates[note.template_key]
        version = (
            note.template_version if note.template_version is not None else (template and template.current_version)
        )
        if template is None or version is None or template.version(version) is None:
            raise RenderError(channel, "template", f"template {note.template_key!r} no longer exists")
        return renderer_for(template, version)


def devices_of(channel: str, recipient_ids: set[int]) -> dict[int, tuple[DeviceTarget, ...]]:
    adapter = channel_class(channel)
    if adapter is None or not adapter.platforms or not recipient_ids:
        return {}
    devices: dict[int, list[DeviceTarget]] = defaultdict(list)
    for d in db.session.scalars(
        select(Device)
        .where(
            among(Device.recipient_id, recipient_ids), Device.active.is_(True), Device.platform.in_(adapter.platforms)
        )
        .order_by(Device.id)
    ):
        devices[d.recipient_id].append(DeviceTarget(d.id, d.platform, d.token, d.p256dh, d.auth))
    return {recipient_id: tuple(targets) for recipient_id, targets in devices.items()}


def address_of(person, channel: str) -> str | None:
    """The recipient's address on a channel (its adapter names the column), if the channel uses one."""
    adapter = channel_class(channel)
    return getattr(person, adapter.address_field) if adapter and adapter.address_field else None


def build_messages(channel: str, items: list[Item], renderers: Renderers) -> list[tuple[Item, Message | RenderError]]:
    """Every item's message (or why it cannot be rendered), devices loaded in one query."""
    config = current_app.config
    devices = devices_of(channel, {item.person.id for item in items})
    built = []
    for item in items:
        note, person = item.notification, item.person
        try:
            content = renderers.render(note, channel, person)
        except RenderError as error:
            built.append((item, error))
            continue
        headers = {}
        if offers_one_click_unsubscribe(channel) and note.type == "marketing":
            token = unsubscribe_token(config["SECRET_KEY"], person.external_id, note.category)
            headers = list_unsubscribe_headers(f"{config['BASE_URL']}/unsubscribe/{token}")
        built.append(
            (
                item,
                track(
                    Message(
                        delivery_id=item.id,
                        recipient_id=person.id,
                        notification_id=note.id,
                        channel=channel,
                        idempotency_key=item.idempotency_key,
                        recipient_external_id=person.external_id,
                        notification_type=note.type,
                        category=note.category,
                        priority=note.priority,
                        content=content,
                        data=note.data or {},
                        address=address_of(person, channel),
                        collapse_key=note.collapse_key,
                        headers=headers,
                        devices=devices.get(person.id, ()),
                    ),
                    config,
                ),
            )
        )
    return built
