"""Console area: campaigns -- compose, test-send, launch, pause, resume, cancel, watch progress live.

Marketers and admins both run campaigns. The live page streams progress over
SSE (``/console/campaigns/<id>/events``) from the campaign's Redis counters; without
JavaScript the same numbers render server-side and a refresh link updates them.
"""

from __future__ import annotations

import json
import time as clock

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from redis.exceptions import RedisError

from app.broadcasts import stats as broadcast_stats
from app.campaigns import planning, progress, store, testsend
from app.console.blueprint import bp
from app.console.forms_campaigns import CHANNEL_LABELS, SCHEDULE_LABELS, CampaignForm, TestSendForm
from app.extensions import db, htmx
from app.models import Campaign, Template
from app.models.campaigns import CANCELLED, FINISHED
from app.realtime.stream import final_retry, stopping
from app.redis_client import get_redis

SAMPLE_SECONDS = 0.5
READ_EVERY = 10  # samples between read/click count queries (~5 s)
STREAM_MAX_SECONDS = 3600
HEARTBEAT_SECONDS = 15.0
TEST_RESULT_POLLS = 120  # the test-send panel asks once a second for two minutes, then offers "Check again"


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        abort(404, "No such campaign.")
    return campaign


def _attach_errors(form: CampaignForm, errors: dict[str, list[str]]) -> None:
    for name, messages in errors.items():
        getattr(form, name).errors = list(getattr(form, name).errors or []) + messages


# -- pages -------------------------------------------------------------------------------------


@bp.get("/campaigns")
@login_required
def campaigns():
    return render_template("console/campaigns/index.html", campaigns=store.list_campaigns())


@bp.route("/campaigns/new", methods=["GET", "POST"])
@login_required
def campaign_new():
    form = CampaignForm()
    form.fill_choices()
    if form.validate_on_submit():
        fields, errors = form.to_fields()
        if not errors:
            campaign = store.create_campaign(fields, current_user)
            flash("Campaign saved as a draft. Test it, then launch.", "info")
            return redirect(url_for("console.campaign_detail", campaign_id=campaign.id))
        _attach_errors(form, errors)
    return render_template(
        "console/campaigns/compose.html", form=form, campaign=None, channel_offer=_channel_offer()
    ), 200 if request.method == "GET" or not form.errors else 422


@bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
@login_required
def campaign_edit(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    if campaign.status != "draft":
        flash("Only a draft can be edited; this campaign has been launched.", "error")
        return redirect(url_for("console.campaign_detail", campaign_id=campaign.id))
    form = CampaignForm()
    form.fill_choices()
    if request.method == "GET":
        form.load(campaign)
    elif form.validate_on_submit():
        fields, errors = form.to_fields()
        if not errors:
            store.update_campaign(campaign, fields, current_user)
            flash("Draft saved.", "info")
            return redirect(url_for("console.campaign_detail", campaign_id=campaign.id))
        _attach_errors(form, errors)
    return render_template(
        "console/campaigns/compose.html", form=form, campaign=campaign, channel_offer=_channel_offer()
    ), 200 if request.method == "GET" or not form.errors else 422


def _channel_offer() -> list[tuple[Template, list[str]]]:
    """Each template with the channels it has variants for, listed by name next to the channel boxes."""
    return [(t, store.template_channels(t)) for t in store.templates()]


def _detail_context(campaign: Campaign) -> dict:
    template = db.session.get(Template, campaign.template_id) if campaign.template_id is not None else None
    view = _progress_or_none(campaign)
    counted_failures = view is None or view.failed > 0  # the grouping reads the deliveries: skip it when none failed
    return {
        "campaign": campaign,
        "template": template,
        "view": view,
        "failures": store.failure_groups(campaign.id) if campaign.status != "draft" and counted_failures else [],
        "problems": store.launch_problems(campaign),
        "waves": store.waves(campaign),
        "channel_labels": CHANNEL_LABELS,
        "schedule_labels": SCHEDULE_LABELS,
        "max_polls": TEST_RESULT_POLLS,
        "audience_count": store.audience_count(campaign.audience_filter) if campaign.status == "draft" else None,
        "broadcast": broadcast_stats.for_campaign(campaign.id) if campaign.status != "draft" else None,
        "threshold": current_app.config["BROADCAST_THRESHOLD"],
    }


def _progress_or_none(campaign: Campaign) -> planning.Progress | None:
    try:
        return store.campaign_progress(campaign)
    except RedisError:
        return None


@bp.get("/campaigns/<int:campaign_id>")
@login_required
def campaign_detail(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    return render_template(
        "console/campaigns/detail.html",
        test_form=TestSendForm(),
        results=None,
        outcomes=None,
        **_detail_context(campaign),
    )


@bp.get("/campaigns/<int:campaign_id>/progress")
@login_required
def campaign_progress(campaign_id: int):
    """The progress panel alone (htmx refresh); a full page for a browser without JavaScript."""
    campaign = _campaign_or_404(campaign_id)
    if htmx:
        return render_template(
            "console/campaigns/_progress.html",
            campaign=campaign,
            view=_progress_or_none(campaign),
            channel_labels=CHANNEL_LABELS,
        )
    return redirect(url_for("console.campaign_detail", campaign_id=campaign_id))


@bp.post("/campaigns/<int:campaign_id>/test")
@login_required
def campaign_test_send(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    form = TestSendForm()
    results, outcomes = None, None
    if form.validate_on_submit():
        user_ids = [u.strip() for u in form.user_ids.data.split(",") if u.strip()][:20]
        if campaign.template_id is None:  # an API run's literal content: the API's own send is its test
            form.user_ids.errors = ["A topic or audience send made by the API has no template to test-send."]
        elif not user_ids:
            form.user_ids.errors = ["Give at least one user id."]
        else:
            results = testsend.test_send(campaign, user_ids, current_user)
            outcomes = testsend.test_outcomes(campaign, [r.notification_id for r in results if r.notification_id])
    status = 422 if form.errors or form.user_ids.errors else 200
    return render_template(
        "console/campaigns/detail.html", test_form=form, results=results, outcomes=outcomes, **_detail_context(campaign)
    ), status


@bp.get("/campaigns/<int:campaign_id>/test-results")
@login_required
def campaign_test_results(campaign_id: int):
    """What became of a test-send's deliveries (``?n=<notification id>`` each); the panel polls it until settled."""
    campaign = _campaign_or_404(campaign_id)
    outcomes = testsend.test_outcomes(campaign, request.args.getlist("n")[:20])
    if htmx:
        return render_template(
            "console/campaigns/_test_outcomes.html",
            campaign=campaign,
            outcomes=outcomes,
            channel_labels=CHANNEL_LABELS,
            polls=request.args.get("poll", 0, type=int),
            max_polls=TEST_RESULT_POLLS,
        )
    return render_template(
        "console/campaigns/detail.html",
        test_form=TestSendForm(),
        results=[],
        outcomes=outcomes,
        **_detail_context(campaign),
    )


@bp.get("/campaigns/<int:campaign_id>/failures")
@login_required
def campaign_failures(campaign_id: int):
    """The failures panel alone, refreshed by the page when the failed count changes."""
    campaign = _campaign_or_404(campaign_id)
    if not htmx:
        return redirect(url_for("console.campaign_detail", campaign_id=campaign_id))
    return render_template("console/campaigns/_failures.html", failures=store.failure_groups(campaign.id))


@bp.get("/campaigns/<int:campaign_id>/controls")
@login_required
def campaign_controls(campaign_id: int):
    """The status badge and the buttons that fit it, swapped in when the live status changes."""
    campaign = _campaign_or_404(campaign_id)
    if not htmx:
        return redirect(url_for("console.campaign_detail", campaign_id=campaign_id))
    return render_template("console/campaigns/_controls.html", campaign=campaign, oob_status=True)


@bp.post("/campaigns/<int:campaign_id>/<any(launch, pause, resume, cancel):action>")
@login_required
def campaign_action(campaign_id: int, action: str):
    campaign = _campaign_or_404(campaign_id)
    if not FlaskForm().validate_on_submit():  # CSRF only
        abort(400, "The form expired; reload the page and try again.")
    try:
        if action == "launch":
            problems = store.launch(campaign, current_user)
            if problems:
                for problem in problems:
                    flash(problem, "error")
                return redirect(url_for("console.campaign_detail", campaign_id=campaign.id))
            flash("Campaign launched.", "info")
        elif action == "pause":
            store.pause(campaign, current_user)
            flash("Campaign paused: nothing more is sent until you resume it.", "info")
        elif action == "resume":
            store.resume(campaign, current_user)
            flash("Campaign resumed.", "info")
        else:
            store.cancel(campaign, current_user)
            flash("Campaign cancelled: nothing more will be sent.", "info")
    except store.CampaignStateError as error:
        flash(str(error), "error")
    return redirect(url_for("console.campaign_detail", campaign_id=campaign.id))


# -- live progress -----------------------------------------------------------------------------


def progress_payload(status: str, counters: dict[str, int], engagement: tuple[int, int], channels: int) -> dict:
    read, clicked = engagement
    view = planning.progress_from_counters(counters, read=read, clicked=clicked)
    return {
        "status": status,
        "planned": view.planned,
        "sent": view.sent,
        "suppressed": view.suppressed,
        "failed": view.failed,
        "read": view.read,
        "clicked": view.clicked,
        "percent": view.percent(channels),
        "sent_by_channel": view.sent_by_channel,
        "suppressed_reasons": view.suppressed_reasons,
    }


class ProgressStream:
    """Samples the campaign's counters every ~500 ms and emits an event when they change.

    Ends when the campaign is finished or cancelled, after an hour (the browser
    reconnects), or when the client goes away (gevent raises on the next write;
    WSGI then calls ``close``). ``time.sleep`` yields to other greenlets under gevent.
    """

    def __init__(self, app, campaign: Campaign, redis_conn, counters_key: str, heartbeat: float):
        self.app, self.campaign_id = app, campaign.id
        self.planned, self.channels = campaign.planned, len(campaign.channels or [])
        self.status = campaign.status
        self.redis, self.key, self.heartbeat = redis_conn, counters_key, heartbeat
        self.closed = False

    def _engagement(self) -> tuple[int, int]:
        with self.app.app_context():
            try:
                return store.engagement(self.campaign_id)
            finally:
                db.session.remove()

    def __iter__(self):
        yield "retry: 2000\n\n"
        last_payload, last_write = None, clock.monotonic()
        started, samples, engagement = last_write, 0, self._engagement()
        while not self.closed and clock.monotonic() - started < STREAM_MAX_SECONDS:
            if stopping():
                yield final_retry()
                return
            status, counters = progress.parse(self.redis.hgetall(self.key))
            status = status or self.status
            counters.setdefault("planned", self.planned)
            samples += 1
            if samples % READ_EVERY == 0:
                engagement = self._engagement()
            payload = progress_payload(status, counters, engagement, self.channels)
            if payload != last_payload:
                last_payload, last_write = payload, clock.monotonic()
                yield f"event: progress\ndata: {json.dumps(payload)}\n\n"
            elif clock.monotonic() - last_write >= self.heartbeat:
                last_write = clock.monotonic()
                yield ": keepalive\n\n"
            if status in (FINISHED, CANCELLED):
                yield "event: done\ndata: {}\n\n"
                return
            clock.sleep(SAMPLE_SECONDS)

    def close(self) -> None:
        self.closed = True


@bp.get("/campaigns/<int:campaign_id>/events")
@login_required
def campaign_events(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    if campaign.status != "draft":
        store.campaign_progress(campaign, with_engagement=False)  # rebuilds the counters if Redis lost them
    stream = ProgressStream(
        current_app._get_current_object(), campaign, get_redis(), progress.progress_key(campaign.id), HEARTBEAT_SECONDS
    )
    db.session.remove()  # a long stream must not hold a database connection
    return Response(
        stream, mimetype="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
