"""The preferences page's topics: the groups the signed-in user is in, and leaving one that allows it."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for

from app.extensions import htmx
from app.inbox.auth import recipient_required
from app.inbox.blueprint import bp
from app.models import Recipient
from app.topics import store


def topics_context(recipient: Recipient) -> dict:
    return {"topics": store.topics_of(recipient.id)}


@bp.post("/inbox/topics/<string(maxlength=128):key>/leave")
@recipient_required
def leave_topic(recipient: Recipient, key: str):
    """Only the session's own membership, and only of a topic whose owner lets subscribers leave."""
    left = store.leave(recipient.id, key)
    message = "You left the topic." if left else "This topic cannot be left here."
    if htmx:
        return render_template("inbox/_topics.html", message=message, **topics_context(recipient))
    flash(message, "ok" if left else "error")
    return redirect(url_for("inbox.preferences"), code=303)
