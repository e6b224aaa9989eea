"""A hostile template fails its delivery quickly and permanently in a real worker, and is an error in the preview, never a 500."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from rq import Queue
from sqlalchemy import select

from app.config import QUEUE_NAMES
from app.extensions import db
from app.models import Delivery
from app.redis_client import get_redis
from tests.conftest import PROJECT_ROOT
from tests.factories import make_recipient, make_staff, make_template

NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
BILLION_RANGE = "{% for x in range(10**9) %}x{% endfor %}"
GIGABYTE = "{{ 'x' * 10**9 }}"


def send(api, template: str) -> str:
    response = api.post(
        "/v1/notifications",
        json={"user_id": "ana", "type": "transactional", "template": template, "channels": ["in_app"]},
    )
    assert response.status_code == 202, response.json
    return response.json["id"]


@pytest.mark.slow
def test_hostile_templates_fail_as_render_error_in_a_real_worker_and_hold_it_no_longer_than_the_budget(
    app, api, test_env
):
    make_recipient(external_id="ana")
    for key, body in (("nested", NESTED_LOOPS), ("billion", BILLION_RANGE), ("gigabyte", GIGABYTE), ("fine", "Hello")):
        make_template(key, variants={"en": {"in_app": {"title": "Hi", "body": body}}})
    ids = {key: send(api, key) for key in ("nested", "billion", "gigabyte", "fine")}

    started = time.monotonic()
    worker = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--burst"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **test_env},
        capture_output=True,
        timeout=240,
    )
    elapsed = time.monotonic() - started
    assert worker.returncode == 0, worker.stderr.decode()[-2000:]
    # Without the budget the nested loops alone held the worker for RQ's 300 s job timeout, three times over.
    assert elapsed < 60, f"the worker took {elapsed:.0f} s"

    db.session.remove()
    deliveries = {d.notification_id: d for d in db.session.scalars(select(Delivery))}
    assert deliveries[ids["fine"]].status == "DELIVERED"
    for key, reason in (
        ("nested", "rendering took longer than 200 ms"),
        ("billion", "Range too big"),
        ("gigabyte", "a value over 256 KB"),
    ):
        delivery = deliveries[ids[key]]
        assert (delivery.status, delivery.error_code) == ("FAILED", "render_error"), key
        assert reason in delivery.last_error and "(line 1)" in delivery.last_error
    connection = get_redis()
    assert all(Queue(name, connection=connection).failed_job_registry.count == 0 for name in QUEUE_NAMES)
    assert all(Queue(name, connection=connection).scheduled_job_registry.count == 0 for name in QUEUE_NAMES), (
        "nothing retried"
    )


def test_preview_shows_a_hostile_template_as_an_error_at_its_line_not_a_500(app, client):
    make_staff(email="mia@example.com", password="correct horse battery", role="marketer")
    client.post("/console/login", data={"email": "mia@example.com", "password": "correct horse battery"})
    make_recipient(external_id="ana")
    form = {
        "key": "hostile",
        "name": "Hostile",
        "category": "general",
        "type": "marketing",
        "default_locale": "en",
        "locales": ["en"],
        "preview_user": "ana",
        "v-en-in_app-title": "Hi",
        "v-en-in_app-body": "Hello\n" + BILLION_RANGE,
        "v-en-sms-text": NESTED_LOOPS,
        "v-en-push-title": "Hi",
        "v-en-push-body": GIGABYTE,
    }
    started = time.monotonic()
    response = client.post("/console/templates/preview", data=form, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert time.monotonic() - started < 10
    html = response.get_data(as_text=True)
    assert "Line 2: OverflowError: Range too big" in html
    assert "Line 1: rendering took longer than 200 ms" in html
    assert "Line 1: a value over 256 KB" in html


def csrf_token(page: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def test_preview_under_gunicorn_gevent_answers_with_the_error_and_the_worker_keeps_serving(app, live_server):
    make_staff(email="mia@example.com", password="correct horse battery", role="marketer")
    make_recipient(external_id="ana")
    with httpx.Client(base_url=live_server, timeout=60) as http:
        http.post(
            "/console/login",
            data={
                "email": "mia@example.com",
                "password": "correct horse battery",
                "csrf_token": csrf_token(http.get("/console/login").text),
            },
        )
        token = csrf_token(http.get("/console/templates/new").text)
        form = {
            "key": "hostile",
            "name": "Hostile",
            "category": "general",
            "type": "marketing",
            "default_locale": "en",
            "locales": ["en"],
            "preview_user": "ana",
            "csrf_token": token,
            "v-en-in_app-title": "Hi",
            "v-en-in_app-body": NESTED_LOOPS,
        }
        started = time.monotonic()
        response = http.post("/console/templates/preview", data=form, headers={"HX-Request": "true"})
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert "Line 1: rendering took longer than 200 ms" in response.text
        assert elapsed < 10, f"the preview took {elapsed:.1f} s (gunicorn's worker timeout is 30 s)"
        assert http.get("/healthz").status_code == 200
