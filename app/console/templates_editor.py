"""Console area: message templates -- edit per-channel variants per locale, live preview, versions, diffs.

Every save is a new immutable TemplateVersion and bumps ``current_version``;
restoring an old version saves its content again as the newest. Campaigns
and notifications pin ``Template.version(n)``, so nothing here rewrites a
version that exists.
"""

from __future__ import annotations

import json
from functools import wraps

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.channels.apns import MAX_PAYLOAD_BYTES
from app.console.blueprint import bp
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
from app.console.template_diff import diff_variants
from app.console.template_preview import build_preview, content_problems, preview_failures
from app.delivery.constants import ROLES
from app.delivery.rendering import CHANNEL_FIELDS
from app.extensions import db, htmx
from app.models import AuditEntry, Recipient, StaffUser, Template, TemplateVersion
from app.render_checks import attribute_keys, template_variables

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


# -- persistence -------------------------------------------------------------------------------


class StaleVersion(Exception):
    """Someone saved a newer version while this editor was open."""


class KeyTaken(Exception):
    """Another template took this key between the form's check and the insert."""


META_FIELDS = ("name", "category", "type", "default_locale")


def _snapshot(template: Template) -> dict:
    return {**{name: getattr(template, name) for name in ("key", *META_FIELDS)}, "version": template.current_version}


def save_template(
    template: Template | None, meta: dict, variants: dict, staff: StaffUser, base_version: int | None = None
) -> Template:
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
    latest = (
        0
        if template.id is None
        else db.session.scalar(
            select(func.max(TemplateVersion.version)).where(TemplateVersion.template_id == template.id)
        )
        or 0
    )
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
    db.session.add(
        AuditEntry(
            staff_user_id=staff.id,
            actor=staff.email,
            action="template.create" if before is None else "template.save",
            target_type="template",
            target_id=template.key,
            before=before,
            after=_snapshot(template),
        )
    )
    db.session.commit()
    return template


def restore_version(template: Template, number: int, staff: StaffUser) -> Template:
    """Save an old version's content as the newest version (history is never rewritten)."""
    old = template.version(number)
    if old is None:
        abort(404)
    meta = {name: getattr(template, name) for name in META_FIELDS}
    saved = save_template(template, meta, old.variants, staff)
    db.session.add(
        AuditEntry(
            staff_user_id=staff.id,
            actor=staff.email,
            action="template.restore",
            target_type="template",
            target_id=template.key,
            before={"version": number},
            after={"version": saved.current_version},
        )
    )
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
        return {}, 'Sample data must be a JSON object, e.g. {"amount": 12}.'
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
    if request.form.get("action") != "save_anyway":
        sample, failures = _failures_for_sample(variants, form)
        if failures:
            return _render_editor(form, template, locales, variants, render_failures=failures, sample=sample), 422
    meta = {name: form[name].data for name in ("key", *META_FIELDS)}
    base = int(form.base_version.data) if (form.base_version.data or "").isdigit() else None
    try:
        saved = save_template(template, meta, variants, current_user, base)
    except KeyTaken:
        form.key.errors.append("A template with this key exists already.")
        return _render_editor(form, template, locales, variants), 422
    except StaleVersion:
        general = [
            (
                "Someone saved a newer version while you were editing. Open the template again to see it; "
                "your changes are still in this form."
            )
        ]
        return _render_editor(form, template, locales, variants, general=general), 409
    flash(f"Saved {saved.key}, version {saved.current_version}.", "info")
    return redirect(url_for("console.template_edit", template_id=saved.id))


def _failures_for_sample(variants: dict, form: TemplateForm) -> tuple[Recipient | None, list[str]]:
    """Render every variant for the sample recipient (the preview's, else the first one there is)."""
    recipient = find_recipient(form.preview_user.data) or db.session.scalar(
        select(Recipient).order_by(Recipient.id).limit(1)
    )
    if recipient is None:
        return None, []
    data, _error = parse_sample_data(form.sample_data.data)
    meta = {"type": form.type.data, "category": form.category.data}
    preview = build_preview(variants, form.default_locale.data or "en", meta, recipient, data)
    return recipient, preview_failures(variants, preview)


def _keep_channels_the_editor_does_not_show(variants: dict, saved: dict) -> None:
    """A variant written by other means (e.g. a separate web_push one) survives a save from the editor."""
    for locale, channels in saved.items():
        if locale in variants:
            for channel, values in channels.items():
                if channel not in EDITOR_CHANNELS:
                    variants[locale][channel] = values


def _render_editor(
    form,
    template,
    locales,
    variants,
    field_errors=None,
    general=None,
    locale_message=None,
    render_failures=None,
    sample=None,
):
    data, _error = parse_sample_data(form.sample_data.data)
    return render_template(
        "console/templates/edit.html",
        form=form,
        template=template,
        locales=locales,
        variants=variants,
        field_errors=field_errors or {},
        general=general or [],
        locale_message=locale_message,
        render_failures=render_failures or [],
        sample=sample,
        variables=template_variables(data, attribute_keys()),
        channels=EDITOR_CHANNELS,
        channel_fields=CHANNEL_FIELDS,
        channel_labels=CHANNEL_LABELS,
        field_name=field_name,
        optional_fields=OPTIONAL_FIELDS,
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
    return render_template(
        "console/templates/_preview.html",
        preview=preview,
        slots=slots,
        data_error=data_error,
        channel_labels=CHANNEL_LABELS,
        max_push=MAX_PAYLOAD_BYTES,
        oob=True,
        data_variables=template_variables(data, [])["data"],
    )


@bp.get("/templates/recipients")
@content_editor_required
def template_recipient_search():
    """Up to 10 user ids starting with what was typed, as <option>s for the preview's datalist."""
    typed = request.args.get("preview_user", "").strip()
    ids = []
    if typed:
        pattern = typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        ids = db.session.scalars(
            select(Recipient.external_id)
            .where(Recipient.external_id.like(pattern, escape="\\"))
            .order_by(Recipient.external_id)
            .limit(10)
        ).all()
    return render_template("console/templates/_recipient_options.html", ids=ids)


@bp.get("/templates/<int:template_id>/versions")
@content_editor_required
def template_versions(template_id: int):
    template = _template_or_404(template_id)
    authors = dict(
        db.session.execute(
            select(StaffUser.id, StaffUser.email).where(
                StaffUser.id.in_({v.created_by for v in template.versions if v.created_by})
            )
        ).all()
    )
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
