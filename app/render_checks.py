"""Render a template for real recipients before anyone relies on it.

A template that reads a variable a recipient lacks fails at send time, one
FAILED delivery per recipient. These checks run the same renderer on a small
sample first: the editor's save (for its sample recipient), a campaign's
launch and a daily rule's enabling (for a sample of the audience, every
targeted channel, each locale the audience has). They also list the variables
a template may read, so nobody has to guess the names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from app.audiences.filters import compile_filter
from app.delivery.rendering import RenderError, VersionRenderer, renderer_for
from app.extensions import db
from app.models import Notification, Recipient, Template
from app.pipeline.facts import render_context

SAMPLE_SIZE = 50  # recipients rendered for a launch or a rule
ATTRIBUTE_SAMPLE_ROWS = 500  # newest recipients whose attribute keys the editor lists
RECIPIENT_FIELDS = ("id", "email", "phone", "locale", "timezone")
NOTIFICATION_FIELDS = ("id", "type", "category", "title", "body")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class RenderFailure:
    """The first recipient a template cannot be rendered for, and why."""

    user_id: str
    channel: str
    locale: str | None
    message: str

    def __str__(self) -> str:
        return (
            f"The template does not render for recipient {self.user_id} "
            f"({self.channel}, locale {self.locale or 'none'}): {self.message}"
        )


# -- the variables a template may read ---------------------------------------------------------


def variable_path(prefix: str, key: str) -> str:
    """``recipient.attributes.plan``, or ``recipient.attributes["first name"]`` when the key is no identifier."""
    return f"{prefix}.{key}" if _IDENTIFIER.match(key) else f"{prefix}[{key!r}]"


def attribute_keys(rows: int = ATTRIBUTE_SAMPLE_ROWS) -> list[str]:
    """Attribute keys seen on the newest recipients: a bounded sample by primary key, never a table scan."""
    keys: set[str] = set()
    for attributes in db.session.scalars(select(Recipient.attributes).order_by(Recipient.id.desc()).limit(rows)):
        if isinstance(attributes, dict):
            keys.update(str(k) for k in attributes)
    return sorted(keys)


def template_variables(sample_data: dict, attributes: list[str]) -> dict[str, list[str]]:
    """What the editor lists, by group: recipient fields and attributes, ``data.*`` from the sample, notification."""
    return {
        "recipient": [f"recipient.{name}" for name in RECIPIENT_FIELDS]
        + [variable_path("recipient.attributes", key) for key in attributes],
        "data": [variable_path("data", str(key)) for key in sorted(sample_data, key=str)],
        "notification": [f"notification.{name}" for name in NOTIFICATION_FIELDS],
    }


# -- rendering for a sample --------------------------------------------------------------------


def sample_recipients(condition, size: int = SAMPLE_SIZE) -> list[Recipient]:
    """Up to ``size`` recipients matching ``condition``: the first of each locale (with and without a time zone),
    then the lowest ids, so every locale the audience has is tried."""
    firsts = (
        select(func.min(Recipient.id))
        .where(condition)
        .group_by(Recipient.locale, Recipient.timezone.is_(None))
        .limit(size)
    )
    ids = list(db.session.scalars(firsts))
    ids += db.session.scalars(select(Recipient.id).where(condition).order_by(Recipient.id).limit(size))
    chosen = list(dict.fromkeys(ids))[:size]
    return list(db.session.scalars(select(Recipient).where(Recipient.id.in_(chosen)).order_by(Recipient.id)))


def probe_notification(template: Template, data: dict) -> Notification:
    """A notification as the producer would create it (never saved): the render context reads it."""
    return Notification(id="0" * 32, type=template.type, category=template.category, title="", body="", data=data)


def first_failure(
    renderer: VersionRenderer, recipients: list[Recipient], channels: list[str], notification: Notification
) -> RenderFailure | None:
    for recipient in recipients:
        context = render_context(recipient, notification)
        for channel in channels:
            try:
                renderer.render(channel, recipient.locale, context)
            except RenderError as error:
                return RenderFailure(recipient.external_id, channel, recipient.locale, str(error))
    return None


def audience_failure(
    template: Template, version_number: int, audience_filter: dict, channels: list[str], data: dict, now: datetime
) -> RenderFailure | None:
    """Render ``template`` at ``version_number`` for a sample of the audience on every channel; the first failure."""
    condition = compile_filter(audience_filter, db.session.get_bind().dialect.name, now)
    recipients = sample_recipients(condition)
    return first_failure(
        renderer_for(template, version_number), recipients, channels, probe_notification(template, data)
    )
