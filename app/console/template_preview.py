"""The template editor's checks and preview: what blocks a save, and each channel as a recipient would get it.

Syntax and variable names are checked without a recipient; rendering needs
one (the preview's, or the sample recipient a save is checked for).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from app.channels import Message, channel_class
from app.channels.apns import apns_payload
from app.channels.fcm import fcm_body
from app.console.forms_content import CHANNEL_LABELS, EDITOR_CHANNELS, OPTIONAL_FIELDS, field_name
from app.delivery.rendering import (
    CHANNEL_FIELDS,
    FIELD_LIMITS,
    RenderError,
    pick_variant,
    render_field,
    syntax_errors,
    unknown_variables,
)
from app.delivery.sms import count_segments
from app.models import Notification, Recipient
from app.pipeline.facts import render_context


def _fields_of(variants: dict):
    for locale, channels in variants.items():
        for channel, values in channels.items():
            for name, source in values.items():
                yield locale, channel, name, source


def content_problems(variants: dict, default_locale: str) -> tuple[dict[str, str], list[str]]:
    """What blocks a save: per input name (syntax error with its line, unknown variable, missing field), and overall."""
    by_field: dict[str, str] = {}
    general: list[str] = []
    if not variants.get(default_locale):
        general.append(f"The default locale {default_locale} needs content for at least one channel.")
    for locale, channels in variants.items():
        if not channels and locale != default_locale:
            general.append(f"Locale {locale} has no content: fill in a channel or remove the locale.")
        for channel, values in channels.items():
            for name in CHANNEL_FIELDS[channel]:
                if name not in values and (channel, name) not in OPTIONAL_FIELDS:
                    by_field[field_name(locale, channel, name)] = (
                        f"Required when the {CHANNEL_LABELS[channel]} variant is used."
                    )
    for locale, channel, name, source in _fields_of(variants):
        problem = source_problem(source, html=name == "html")
        if problem:
            by_field[field_name(locale, channel, name)] = problem
    return by_field, general


def source_problem(source: str, html: bool = False) -> str | None:
    """A syntax error (with its line) or a variable other than recipient/data/notification."""
    error = syntax_errors(source, html=html)
    if error:
        return error.capitalize()
    unknown = sorted(unknown_variables(source))
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        return f"Unknown variable {names}: templates can read recipient, data and notification."
    return None


@dataclass
class ChannelPreview:
    channel: str
    locale: str
    fields: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    sms: dict | None = None
    push_bytes: dict[str, int] | None = None
    as_mail: bool = False  # the registry's previews_as_mail: the template lays it out as a mail


@dataclass
class Preview:
    field_errors: dict[str, str]
    channels: list[ChannelPreview]
    recipient: Recipient | None
    notice: str | None = None


def render_message(error: RenderError) -> str:
    where = f"Line {error.line}: " if error.line else ""
    return f"{where}{error.message}"


def push_payload_bytes(channel: str, content: dict[str, str], data: dict, category: str) -> dict[str, int]:
    """Bytes of the JSON body APNs and FCM would carry (both cap it at 4096)."""
    message = Message(
        delivery_id=0,
        recipient_id=0,
        notification_id="0" * 32,
        channel=channel,
        idempotency_key="preview",
        recipient_external_id="",
        notification_type="marketing",
        category=category,
        priority="normal",
        content=content,
        data=data,
    )
    token = "x" * 163  # an FCM registration token's usual length
    return {
        "apns": len(json.dumps(apns_payload(message), separators=(",", ":")).encode()),
        "fcm": len(json.dumps(fcm_body(message, token), separators=(",", ":")).encode()),
    }


def build_preview(variants: dict, default_locale: str, meta: dict, recipient: Recipient | None, data: dict) -> Preview:
    """Every field checked (syntax, variables, and rendering for ``recipient``) plus what each channel would send."""
    field_errors, _general = content_problems(variants, default_locale)
    field_errors = {k: v for k, v in field_errors.items() if not v.startswith("Required")}
    if recipient is None:
        return Preview(field_errors, [], None, "Choose a recipient by user id to see the message as they would get it.")
    notification = Notification(
        id="preview",
        type=meta.get("type") or "marketing",
        category=meta.get("category") or "general",
        title="",
        body="",
        data=data,
    )
    context = render_context(recipient, notification)
    for locale, channel, name, source in _fields_of(variants):
        key = field_name(locale, channel, name)
        if key in field_errors:
            continue
        try:
            render_field(channel, name, source, context)
        except RenderError as error:
            field_errors[key] = render_message(error)
    channels = []
    for channel in EDITOR_CHANNELS:
        variant = pick_variant(variants, channel, recipient.locale, default_locale)
        if not variant:
            continue
        locale = next(loc for loc, chans in variants.items() if chans.get(channel) is variant)
        shown = ChannelPreview(channel, locale, as_mail=channel_class(channel).previews_as_mail)
        for name in CHANNEL_FIELDS[channel]:
            if name not in variant:
                continue
            try:
                value = render_field(channel, name, variant[name], context)
            except RenderError as error:
                shown.errors[name] = render_message(error)
                continue
            limit = FIELD_LIMITS.get((channel, name))
            if limit and len(value) > limit:
                shown.errors[name] = f"{len(value)} characters, over the limit of {limit}."
            shown.fields[name] = value
        if channel_class(channel).billed_in_segments and "text" in shown.fields:
            segments = count_segments(shown.fields["text"])
            shown.sms = {"encoding": segments.encoding, "segments": segments.count, "units": segments.units}
        if channel_class(channel).payload_limit and not shown.errors:
            shown.push_bytes = push_payload_bytes(channel, shown.fields, data, notification.category)
        channels.append(shown)
    return Preview(field_errors, channels, recipient)


def preview_failures(variants: dict, preview: Preview) -> list[str]:
    """Every field that fails for the preview's recipient ("en · In-app · body: …"), for the save confirmation."""
    failures = []
    for locale, channel, name, _source in _fields_of(variants):
        message = preview.field_errors.get(field_name(locale, channel, name))
        if message:
            failures.append(f"{locale} · {CHANNEL_LABELS.get(channel, channel)} · {name}: {message}")
    for shown in preview.channels:
        for name, message in shown.errors.items():
            line = f"{shown.locale} · {CHANNEL_LABELS.get(shown.channel, shown.channel)} · {name}: {message}"
            if line not in failures:
                failures.append(line)
    return failures
