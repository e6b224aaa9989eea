"""Inbox pages: the list, its actions, preferences, web-push opt-in, and staff's read-only view.

Each view reads the request, calls one store/recipient function, renders.
The same partial (``_items.html``) serves the first render, "load more", and
the live refresh; htmx requests get the partial, others the full page, so
every action also works as a plain form without JavaScript.
"""

from __future__ import annotations

from zoneinfo import available_timezones

from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_login import login_required
from pydantic import ValidationError
from sqlalchemy import delete, select, union

from app.channels import labels, preference_channels
from app.channels.in_app import InAppChannel
from app.channels.vapid import application_server_key
from app.delivery.constants import ALL_CATEGORIES
from app.delivery.endpoints import push_endpoint_problem
from app.device_schemas import DeviceCreate
from app.extensions import db, htmx
from app.inbox import preferences as prefs_form
from app.inbox import store
from app.inbox.auth import recipient_required, sign_in, sign_in_with_user_token, token_refusal
from app.inbox.blueprint import bp
from app.inbox.display import present
from app.inbox.grouping import group_entries
from app.inbox.tokens import TokenRefused
from app.inbox.topics import topics_context
from app.models import Device, Notification, Recipient, Template
from app.models.types import utcnow
from app.recipients import find_recipient, register_device, set_preferences, upsert_recipient
from app.schemas import UserUpsert, parse_timezone

PAGE_SIZE = 20
FILTERS = ("all", "unread")
ACTIONS = ("read", "read_all", "archive", "open")


def _filter() -> str:
    value = request.values.get("filter", "all")
    return value if value in FILTERS else "all"


def _ids() -> list[str]:
    return [i for i in request.form.getlist("ids") if i][: store.MAX_LIMIT]


def _render_inbox(recipient: Recipient, view_as: bool = False):
    """The inbox for ``recipient``: full page, or just the items when htmx asks (load more, live refresh)."""
    chosen = _filter()
    try:
        items, next_cursor = store.entries_page(
            recipient.id, PAGE_SIZE, request.args.get("cursor") or None, chosen == "unread"
        )
    except store.BadCursor:
        abort(400, "This page link is out of date; go back to the start of your inbox.")
    context = {
        "recipient": recipient,
        "entries": present(group_entries(items), recipient.timezone, recipient.locale, utcnow()),
        "next_cursor": next_cursor,
        "filter": chosen,
        "unread": store.unread_count(recipient.id),
        "read_only": view_as,
        "page_endpoint": "inbox.view_as" if view_as else "inbox.inbox",
        "endpoint_args": {"user_id": recipient.external_id} if view_as else {},
        "action_urls": _action_urls(recipient, view_as),
    }
    if htmx:
        return render_template("inbox/_items.html", oob_badge=True, **context)
    return render_template("inbox/inbox.html", **context)


def _action_urls(recipient: Recipient, view_as: bool) -> dict[str, str]:
    if view_as:
        return {a: url_for("inbox.view_as_refused", user_id=recipient.external_id, action=a) for a in ACTIONS}
    return {a: url_for(f"inbox.{a}") for a in ACTIONS}


def _back_to_inbox():
    return redirect(url_for("inbox.inbox", filter=_filter()), code=303)


def _badge_only(recipient: Recipient, status: int = 200):
    return render_template("inbox/_badge.html", unread=store.unread_count(recipient.id), oob=True), status


def _signed_in_by_user_token(scope: str, endpoint: str):
    """A page opened with ``?access_token=<jwt>``: open a session within the token's limits, drop it from the URL."""
    try:
        sign_in_with_user_token(request.args.get("access_token", ""), scope)
    except TokenRefused as error:
        return token_refusal(error)
    return redirect(url_for(endpoint), code=303)


@bp.get("/inbox")
def inbox():
    if "access_token" in request.args and "user" not in request.args:
        return _signed_in_by_user_token("inbox", "inbox.inbox")
    if "user" in request.args or "token" in request.args:
        if sign_in(request.args.get("user", ""), request.args.get("token", "")) is None:
            abort(403, "This inbox link is not valid. Open your notifications again from the product you use.")
        return redirect(url_for("inbox.inbox"), code=303)
    return _signed_in_inbox()


@recipient_required
def _signed_in_inbox(recipient: Recipient):
    return _render_inbox(recipient)


@bp.post("/inbox/read")
@recipient_required
def read(recipient: Recipient):
    ids = _ids()
    store.mark_ids_read(recipient.id, ids)
    if not htmx:
        return _back_to_inbox()
    if _filter() == "unread":
        return _badge_only(recipient)
    entries = present(
        group_entries(store.find_visible(recipient.id, ids)), recipient.timezone, recipient.locale, utcnow()
    )
    return render_template(
        "inbox/_entry.html",
        view=entries[0] if entries else None,
        read_only=False,
        action_urls=_action_urls(recipient, False),
        filter=_filter(),
        unread=store.unread_count(recipient.id),
        oob_badge=True,
    )


@bp.post("/inbox/read-all")
@recipient_required
def read_all(recipient: Recipient):
    store.mark_all_read(recipient.id)
    if not htmx:
        return _back_to_inbox()
    return _render_inbox(recipient)


@bp.post("/inbox/archive")
@recipient_required
def archive(recipient: Recipient):
    store.archive(recipient.id, _ids())
    return _badge_only(recipient) if htmx else _back_to_inbox()


@bp.post("/inbox/open", endpoint="open")
@recipient_required
def open_entry(recipient: Recipient):
    """Mark the entry read and follow its deep link (a click); only links that passed ``safe_link`` are ever used."""
    ids = _ids()
    entries = group_entries(store.find_visible(recipient.id, ids))
    store.mark_ids_read(recipient.id, ids)
    link = entries[0].link if entries else None
    if link:
        store.record_click(entries[0].latest.id, InAppChannel.name)
    return redirect(link or url_for("inbox.inbox"), code=303)


def _categories(recipient: Recipient) -> tuple[set[str], set[str]]:
    """(categories to show, those that are security) from what was received, templates, and saved switches."""
    received = select(Notification.category, Notification.type).where(Notification.recipient_id == recipient.id)
    templated = select(Template.category, Template.type)
    rows = db.session.execute(union(received, templated)).all()
    categories = {category for category, _type in rows}
    categories |= {p.category for p in recipient.preferences if p.category != ALL_CATEGORIES}
    return categories, {category for category, kind in rows if kind == "security"}


def _render_preferences(recipient: Recipient, error: str | None = None, status: int = 200):
    categories, security = _categories(recipient)
    saved = {(p.channel, p.category): p.enabled for p in recipient.preferences}
    switches, rows = prefs_form.grid(categories, security, saved)
    chosen = {d.category: d.frequency for d in recipient.digest_preferences}
    return render_template(
        "inbox/preferences.html",
        recipient=recipient,
        switches=switches,
        rows=rows,
        digests=prefs_form.digest_rows(rows, chosen),
        digest_labels=prefs_form.DIGEST_LABELS,
        channels=preference_channels(),
        labels=labels(),
        error=error,
        zones=sorted(available_timezones()),
        unread=store.unread_count(recipient.id),
        **topics_context(recipient),
    ), status


@bp.get("/inbox/preferences")
def preferences():
    if "access_token" in request.args:
        return _signed_in_by_user_token("preferences", "inbox.preferences")
    return _preferences_page()


@recipient_required(scope="preferences")
def _preferences_page(recipient: Recipient):
    return _render_preferences(recipient)


@bp.post("/inbox/preferences")
@recipient_required(scope="preferences")
def save_preferences(recipient: Recipient):
    form = request.form
    try:
        update = prefs_form.parse_form(
            form.getlist("shown"),
            form.getlist("pref"),
            form.get("pause") == "on",
            form.get("quiet_start", ""),
            form.get("quiet_end", ""),
            {name.removeprefix("digest-"): form[name] for name in form if name.startswith("digest-")},
        )
        zone = parse_timezone(form.get("timezone") or None)
    except (prefs_form.FormError, ValueError) as error:
        return _render_preferences(recipient, error=str(error), status=400)
    set_preferences(recipient, update)
    if zone != recipient.timezone:
        upsert_recipient(recipient.external_id, UserUpsert(timezone=zone))
    flash("Your preferences are saved. They apply from the next notification.", "ok")
    return redirect(url_for("inbox.preferences"), code=303)


@bp.get("/inbox/push-key")
@recipient_required
def push_key(_recipient: Recipient):
    return jsonify({"applicationServerKey": application_server_key(current_app.instance_path)})


@bp.post("/inbox/devices")
@recipient_required
def add_browser(recipient: Recipient):
    """Save this browser's push subscription (JSON from ``PushSubscription.toJSON()``)."""
    body = request.get_json(silent=True) or {}
    try:
        fields = DeviceCreate.model_validate(
            {"platform": "web", "subscription": {"endpoint": body.get("endpoint"), "keys": body.get("keys")}}
        )
    except ValidationError:
        return jsonify({"error": "That is not a browser push subscription."}), 400
    problem = push_endpoint_problem(fields.subscription.endpoint, current_app.config["WEB_PUSH_PRIVATE_HOSTS"])
    if problem:
        return jsonify({"error": problem}), 400
    device, created = register_device(recipient, fields)
    return jsonify({"id": device.id}), 201 if created else 200


@bp.delete("/inbox/devices")
@recipient_required
def remove_browser(recipient: Recipient):
    endpoint = (request.get_json(silent=True) or {}).get("endpoint")
    result = db.session.execute(delete(Device).where(Device.recipient_id == recipient.id, Device.token == endpoint))
    db.session.commit()
    return ("", 204) if result.rowcount else (jsonify({"error": "No such browser subscription."}), 404)


@bp.get("/sw.js")
def service_worker():
    """Served from the root so its scope can be the whole site."""
    response = make_response(
        send_from_directory(current_app.static_folder, "sw.js", mimetype="text/javascript", max_age=0)
    )
    response.headers["Service-Worker-Allowed"] = "/"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/console/recipients/<user_id>/inbox-view")
@login_required
def view_as(user_id: str):
    """Staff see a recipient's inbox exactly as rendered for them, read-only (nothing is marked read)."""
    recipient = find_recipient(user_id)
    if recipient is None:
        abort(404, "No recipient with that user id.")
    return _render_inbox(recipient, view_as=True)


@bp.post("/console/recipients/<user_id>/inbox-view/<action>")
@login_required
def view_as_refused(user_id: str, action: str):
    abort(403, "Viewing someone's inbox is read-only: staff cannot read, archive or open their notifications.")
