"""``/c/<token>``: a tracked link from an email or a push notification. Count the click, then go where it points."""

from __future__ import annotations

import logging

from flask import abort, current_app, redirect
from sqlalchemy.exc import SQLAlchemyError

from app.delivery.tracking import read_click_token
from app.extensions import db
from app.inbox.blueprint import bp
from app.inbox.store import record_click

log = logging.getLogger(__name__)


@bp.get("/c/<token>")
def follow_link(token: str):
    """The signature is the whole authorisation: only a URL Herald put in a message can come out of a token.

    Counting never stands between the reader and the page: if the database is
    unreachable the click goes uncounted and the redirect still happens.
    """
    click = read_click_token(current_app.config["SECRET_KEY"], token)
    if click is None:
        abort(404, "This link is not valid.")
    try:
        record_click(click.notification_id, click.channel)
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("click on notification %s not recorded", click.notification_id, exc_info=True)
    response = redirect(click.url, code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
