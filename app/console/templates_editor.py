"""Console area: message templates -- edit per-channel variants per locale, live preview, versions, diffs.

Every save is a new immutable TemplateVersion and bumps ``current_version``;
restoring an old version saves its content again as the newest. Campaigns
and notifications pin ``Template.version(n)``, so nothing here rewrites a
version that exists.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import wraps

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.channels.apns import MAX_PAYLOAD_BYTES, apns_payload
from app.channels.base import Message
from app.channels.fcm import fcm_body
from app.console import bp
from app.console.forms_content import (
    CHANNEL_LABELS,
    EDITOR_CHANNELS,
    OPTIONAL_FIELDS,
    TemplateForm,
    editor_fields,
    field_name,
    locales_from_form,
    variants_from_form,
)
from app.delivery.constants import ROLES
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
from app.extensions import db, htmx
from app.models import AuditEntry, Notification, Recipient, StaffUser, Template, TemplateVersion
from app.pipeline.facts import render_context

CONTENT_ROLES = frozenset(ROLES)  # marketers build content; admins can do all a marketer can


def content_editor_required(view):
    """Signed-in staff whose role builds content (admin, marketer); anyone else gets 403."""

    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if current_user.role not in CONTENT_ROLES:
            abort(403, "This page is for marketers and admins.")
        return view(*args, **kwargs)

    return wrapper


# -- validation and preview (pure) -------------------------------------------------------------

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
                    by_field[field_name(locale, channel, name)] = f"Required when the {CHANNEL_LABELS[channel]} variant is used."
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


@dataclass
class Preview:
    field_errors: dict[str, str]
    channels: list[ChannelPreview]
    recipient: Recipient | None
    notice: str | None = None


def render_message(error: RenderError) -> str:
    where = f"Line {error.line}: " if error.line else ""
    return f"{where}{error.message}"


def push_payload_bytes(content: dict[str, str], data: dict, category: str) -> dict[str, int]:
    """Bytes of the JSON body APNs and FCM would carry (both cap it at 4096)."""
    message = Message(delivery_id=0, recipient_id=0, notification_id="0" * 32, channel="push",
                      idempotency_key="preview", recipient_external_id="", notification_type="marketing",
                      category=category, priority="normal", content=content, data=data)
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
    notification = Notification(id="preview", type=meta.get("type") or "marketing", category=meta.get("category") or "general",
                                title="", body="", data=data)
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
        shown = ChannelPreview(channel, locale)
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
        if channel == "sms" and "text" in shown.fields:
            segments = count_segments(shown.fields["text"])
            shown.sms = {"encoding": segments.encoding, "segments": segments.count, "units": segments.units}
        if channel == "push" and not shown.errors:
            shown.push_bytes = push_payload_bytes(shown.fields, data, notification.category)
        channels.append(shown)
    return Preview(field_errors, channels, recipient)


# -- diffs (pure) ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffLine:
    kind: str  # "equal", "delete", "insert", "replace"
    old_number: int | None
    old_text: str | None
    new_number: int | None
    new_text: str | None


@dataclass(frozen=True)
class FieldDiff:
    locale: str
    channel: str
    field: str
    lines: tuple[DiffLine, ...]

    @property
    def label(self) -> str:
        return f"{self.locale} · {CHANNEL_LABELS.get(self.channel, self.channel)} · {self.field}"


def diff_text(old: str, new: str) -> tuple[DiffLine, ...]:
    """Side-by-side line diff (difflib), one row per line pair, for an HTML table."""
    a, b = old.split("\n") if old else [], new.split("\n") if new else []
    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [DiffLine("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]) for k in range(i2 - i1)]
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            old_i, new_j = i1 + k, j1 + k
            has_old, has_new = old_i < i2, new_j < j2
            kind = "replace" if has_old and has_new else ("delete" if has_old else "insert")
            rows.append(DiffLine(kind, old_i + 1 if has_old else None, a[old_i] if has_old else None,
                                 new_j + 1 if has_new else None, b[new_j] if has_new else None))
    return tuple(rows)


def diff_variants(old: dict, new: dict) -> list[FieldDiff]:
    """Only the fields that differ, per locale, channel and field, in a stable order."""
    diffs = []
    for locale in sorted(set(old) | set(new)):
        channels = set(old.get(locale, {})) | set(new.get(locale, {}))
        for channel in sorted(channels, key=lambda c: (EDITOR_CHANNELS + tuple(CHANNEL_FIELDS)).index(c)):
            before, after = old.get(locale, {}).get(channel, {}), new.get(locale, {}).get(channel, {})
            for name in CHANNEL_FIELDS.get(channel, sorted(set(before) | set(after))):
                a, b = before.get(name, ""), after.get(name, "")
                if a != b:
                    diffs.append(FieldDiff(locale, channel, name, diff_text(a, b)))
    return diffs


# -- persistence -------------------------------------------------------------------------------

class StaleVersion(Exception):
    """Someone saved a newer version while this editor was open."""


class KeyTaken(Exception):
    """Another template took this key between the form's check and the insert."""


META_FIELDS = ("name", "category", "type", "default_locale")


def _snapshot(template: Template) -> dict:
    return {**{name: getattr(template, name) for name in ("key", *META_FIELDS)}, "version": template.current_version}


def save_template(template: Template | None, meta: dict, variants: dict, staff: StaffUser,
                  base_version: int | None = None) -> Template:
    """Create the template or add its next version; the (template, version) unique key settles races."""
    before = None
    if template is None:
        template = Template(key=meta["key"], current_version=0, **{name: meta[name] for name in META_FIELDS})
        db.session.add(template)
    else:
        if base_version is not None and base_version != template.current_version:
            raise StaleVersion()
        before = _snapshot(template)
        for name in META_FIELDS:
            setattr(template, name, meta[name])
    latest = 0 if template.id is None else db.session.scalar(
        select(func.max(TemplateVersion.version)).where(TemplateVersion.template_id == template.id)) or 0
    number = latest + 1
    template.versions.append(TemplateVersion(version=number, variants=variants, created_by=staff.id))
    template.current_version = number
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        if before is None:
            raise KeyTaken() from None
        raise StaleVersion() from None
    db.session.add(AuditEntry(staff_user_id=staff.id, actor=staff.email,
                              action="template.create" if before is None else "template.save",
                              target_type="template", target_id=template.key,
                              before=before, after=_snapshot(template)))
    db.session.commit()
    return template


def restore_version(template: Template, number: int, staff: StaffUser) -> Template:
    """Save an old version's content as the newest version (history is never rewritten)."""
    old = template.version(number)
    if old is None:
        abort(404)
    meta = {name: getattr(template, name) for name in META_FIELDS}
    saved = save_template(template, meta, old.variants, staff)
    db.session.add(AuditEntry(staff_user_id=staff.id, actor=staff.email, action="template.restore",
                              target_type="template", target_id=template.key,
                              before={"version": number}, after={"version": saved.current_version}))
    db.session.commit()
    return saved


def find_recipient(user_id: str | None) -> Recipient | None:
    if not user_id:
        return None
    return db.session.scalar(select(Recipient).where(Recipient.external_id == user_id.strip()))


def parse_sample_data(text: str | None) -> tuple[dict, str | None]:
    try:
        data = json.loads(text or "{}")
    except ValueError as error:
        return {}, f"Not JSON: {error}"
    if not isinstance(data, dict):
        return {}, "Sample data must be a JSON object, e.g. {\"amount\": 12}."
    return data, None


# -- views -------------------------------------------------------------------------------------

def _template_or_404(template_id: int) -> Template:
    template = db.session.get(Template, template_id)
    if template is None:
        abort(404)
    return template


@bp.get("/templates")
@content_editor_required
def templates_index():
    templates = db.session.scalars(select(Template).order_by(Template.key)).all()
    return render_template("console/templates/index.html", templates=templates)


def _editor(template: Template | None):
    """Shared by new and edit: GET shows the editor; POST adds/removes a locale or saves."""
    version = template.version() if template else None
    form = TemplateForm(obj=template)
    if request.method == "GET":
        variants = version.variants if version else {"en": {}}
        locales = list(variants) or [form.default_locale.data or "en"]
        form.base_version.data = str(template.current_version) if template else ""
        return _render_editor(form, template, locales, variants)

    if template is not None:
        form.key.data = template.key  # the key is what callers send; it never changes
    locales, locale_message = locales_from_form(request.form, form.default_locale.data or "")
    variants = variants_from_form(request.form, locales)
    if version is not None:
        _keep_channels_the_editor_does_not_show(variants, version.variants)
    if request.form.get("action") == "add_locale" or request.form.get("remove_locale"):
        return _render_editor(form, template, locales, variants, locale_message=locale_message)

    valid = form.validate()
    if valid and template is None and db.session.scalar(select(Template.id).where(Template.key == form.key.data)):
        form.key.errors.append("A template with this key exists already.")
        valid = False
    field_errors, general = content_problems(variants, form.default_locale.data or "")
    if not valid or field_errors or general:
        return _render_editor(form, template, locales, variants, field_errors=field_errors, general=general), 422
    meta = {name: form[name].data for name in ("key", *META_FIELDS)}
    base = int(form.base_version.data) if (form.base_version.data or "").isdigit() else None
    try:
        saved = save_template(template, meta, variants, current_user, base)
    except KeyTaken:
        form.key.errors.append("A template with this key exists already.")
        return _render_editor(form, template, locales, variants), 422
    except StaleVersion:
        general = ["Someone saved a newer version while you were editing. Open the template again to see it; "
                   "your changes are still in this form."]
        return _render_editor(form, template, locales, variants, general=general), 409
    flash(f"Saved {saved.key}, version {saved.current_version}.", "info")
    return redirect(url_for("console.template_edit", template_id=saved.id))


def _keep_channels_the_editor_does_not_show(variants: dict, saved: dict) -> None:
    """A variant written by other means (e.g. a separate web_push one) survives a save from the editor."""
    for locale, channels in saved.items():
        if locale in variants:
            for channel, values in channels.items():
                if channel not in EDITOR_CHANNELS:
                    variants[locale][channel] = values


def _render_editor(form, template, locales, variants, field_errors=None, general=None, locale_message=None):
    return render_template(
        "console/templates/edit.html", form=form, template=template, locales=locales, variants=variants,
        field_errors=field_errors or {}, general=general or [], locale_message=locale_message,
        channels=EDITOR_CHANNELS, channel_fields=CHANNEL_FIELDS, channel_labels=CHANNEL_LABELS,
        field_name=field_name, optional_fields=OPTIONAL_FIELDS,
    )


@bp.route("/templates/new", methods=["GET", "POST"])
@content_editor_required
def template_new():
    return _editor(None)


@bp.route("/templates/<int:template_id>", methods=["GET", "POST"])
@content_editor_required
def template_edit(template_id: int):
    return _editor(_template_or_404(template_id))


@bp.post("/templates/preview")
@content_editor_required
def template_preview():
    """The editor's live preview; also re-sends every field's error slot out of band."""
    default_locale = request.form.get("default_locale", "en")
    locales, _ = locales_from_form(request.form, default_locale)
    variants = variants_from_form(request.form, locales)
    data, data_error = parse_sample_data(request.form.get("sample_data"))
    user_id = request.form.get("preview_user", "").strip()
    recipient = find_recipient(user_id)
    meta = {"type": request.form.get("type"), "category": request.form.get("category")}
    preview = build_preview(variants, default_locale, meta, recipient, data)
    if user_id and recipient is None:
        preview.notice = f"No recipient has user id {user_id!r}."
    slots = [field_name(loc, ch, name) for loc in locales for ch, name in editor_fields()]
    return render_template("console/templates/_preview.html", preview=preview, slots=slots, data_error=data_error,
                           channel_labels=CHANNEL_LABELS, max_push=MAX_PAYLOAD_BYTES, oob=True)


@bp.get("/templates/recipients")
@content_editor_required
def template_recipient_search():
    """Up to 10 user ids starting with what was typed, as <option>s for the preview's datalist."""
    typed = request.args.get("preview_user", "").strip()
    ids = []
    if typed:
        pattern = typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        ids = db.session.scalars(select(Recipient.external_id).where(Recipient.external_id.like(pattern, escape="\\"))
                                 .order_by(Recipient.external_id).limit(10)).all()
    return render_template("console/templates/_recipient_options.html", ids=ids)


@bp.get("/templates/<int:template_id>/versions")
@content_editor_required
def template_versions(template_id: int):
    template = _template_or_404(template_id)
    authors = dict(db.session.execute(select(StaffUser.id, StaffUser.email).where(
        StaffUser.id.in_({v.created_by for v in template.versions if v.created_by}))).all())
    return render_template("console/templates/versions.html", template=template, authors=authors)


@bp.get("/templates/<int:template_id>/diff")
@content_editor_required
def template_diff(template_id: int):
    template = _template_or_404(template_id)
    numbers = [v.version for v in template.versions]
    old_n = request.args.get("a", type=int) or (template.current_version - 1 if template.current_version > 1 else 1)
    new_n = request.args.get("b", type=int) or template.current_version
    old, new = template.version(old_n), template.version(new_n)
    if old is None or new is None:
        abort(404, "No such version.")
    diffs = diff_variants(old.variants, new.variants)
    page = "console/templates/_diff.html" if htmx else "console/templates/diff.html"
    return render_template(page, template=template, diffs=diffs, old=old, new=new, numbers=numbers)


@bp.post("/templates/<int:template_id>/versions/<int:number>/restore")
@content_editor_required
def template_restore(template_id: int, number: int):
    template = restore_version(_template_or_404(template_id), number, current_user)
    flash(f"Restored version {number} as version {template.current_version}.", "info")
    return redirect(url_for("console.template_versions", template_id=template.id))
