"""Console area: topics -- each with its subscriber count, its subscribers a page at a time, and its runs."""

from __future__ import annotations

import re

from flask import abort, render_template, request
from flask_login import login_required
from sqlalchemy import select

from app.console.blueprint import bp
from app.extensions import db, htmx
from app.models import Campaign
from app.topics import store

PAGE = 50


def _page_number() -> int:
    text = request.args.get("page", "1")
    return int(text) if re.fullmatch(r"[1-9][0-9]{0,5}", text) else 1


@bp.get("/topics")
@login_required
def topics_index():
    page = _page_number()
    rows = store.topics_with_counts(PAGE + 1, (page - 1) * PAGE)
    return render_template("console/topics/index.html", topics=rows[:PAGE], page=page, has_next=len(rows) > PAGE)


@bp.get("/topics/<string(maxlength=128):key>")
@login_required
def topic_detail(key: str):
    topic = store.find_topic(key)
    if topic is None:
        abort(404)
    after_text = request.args.get("after", "")
    after = int(after_text) if re.fullmatch(r"[0-9]{1,18}", after_text) else None
    subscribers, next_after = store.subscriber_page(topic.id, PAGE, after)
    context = {"topic": topic, "subscribers": subscribers, "next_after": next_after}
    if htmx and request.args.get("after"):
        return render_template("console/topics/_subscribers.html", **context)
    runs = db.session.scalars(
        select(Campaign).where(Campaign.audience_name == f"topic {topic.key}").order_by(Campaign.id.desc()).limit(20)
    ).all()
    return render_template("console/topics/detail.html", count=store.subscriber_count(topic.id), runs=runs, **context)
