"""Console area: delivery analytics for a period, optionally for one campaign."""

from __future__ import annotations

from flask import render_template, request
from flask_login import login_required
from sqlalchemy import select

from app import analytics
from app.console.blueprint import bp
from app.extensions import db
from app.models import Campaign


def campaign_choices() -> list[tuple[str, str]]:
    """(id, name) of recent campaigns for the picker."""
    rows = db.session.execute(select(Campaign.id, Campaign.name).order_by(Campaign.id.desc()).limit(200)).all()
    return [(str(id_), str(name)) for id_, name in rows]


@bp.get("/analytics")
@login_required
def analytics_page():
    args = request.args
    error = None
    try:
        period = analytics.resolve_period(args.get("period"), args.get("start", ""), args.get("end", ""))
        campaign = analytics.coerce_campaign(args.get("campaign"))
    except analytics.PeriodError as problem:
        error, period, campaign = str(problem), analytics.resolve_period("24h"), None
    return render_template(
        "console/analytics/analytics.html",
        report=analytics.report(period, campaign),
        periods=analytics.PERIODS,
        start=args.get("start", ""),
        end=args.get("end", ""),
        campaigns=campaign_choices(),
        error=error,
    ), (400 if error else 200)
