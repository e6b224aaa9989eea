"""Console area: delivery analytics for a period, optionally for one campaign."""
from __future__ import annotations

from flask import render_template, request
from flask_login import login_required
from sqlalchemy import select

from app import analytics
from app import models
from app.console import bp
from app.extensions import db


def campaign_choices() -> list[tuple[str, str]] | None:
    """(id, name) of recent campaigns for the picker, or None while campaigns do not exist."""
    campaign = getattr(models, "Campaign", None)
    if campaign is None or analytics.campaign_column() is None:
        return None
    rows = db.session.execute(select(campaign.id, getattr(campaign, "name", campaign.id))
                              .order_by(campaign.id.desc()).limit(200)).all()
    return [(str(id_), str(name)) for id_, name in rows]


@bp.get("/console/analytics")
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
        campaign_filter_available=analytics.campaign_column() is not None,
        error=error,
    ), (400 if error else 200)
