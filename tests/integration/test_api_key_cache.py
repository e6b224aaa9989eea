"""The API key cache (app/api/keys.py) against real web processes: a revoked key is refused everywhere within
CACHE_SECONDS, though every process had it cached when it was revoked elsewhere (the console's process)."""

from __future__ import annotations

import os
import time

import httpx
from sqlalchemy import select

from app.api.keys import CACHE_SECONDS, create_api_key
from app.console.operations_store import change_rate_limit, revoke_key
from app.extensions import db
from app.models import ApiKey
from tests.bench.harness import gunicorn
from tests.factories import make_recipient, make_staff

WORKERS = 2


def test_revoked_key_is_refused_by_every_web_process_within_the_cache_lifetime(app, test_env):
    make_recipient(external_id="ana")
    row, key = create_api_key("cached")
    admin = make_staff(role="admin")
    with gunicorn({**os.environ, **test_env}, workers=WORKERS) as base, httpx.Client(base_url=base, timeout=10) as http:
        headers = {"Authorization": f"Bearer {key}"}
        # New connections spread over both workers: each looks the key up once and caches it.
        assert {
            http.get("/v1/users/ana", headers={**headers, "Connection": "close"}).status_code for _ in range(20)
        } == {200}
        revoke_key(db.session.get(ApiKey, row.id), admin)
        revoked_at = time.monotonic()
        answers = []
        while time.monotonic() - revoked_at < CACHE_SECONDS + 2:
            status = http.get("/v1/users/ana", headers={**headers, "Connection": "close"}).status_code
            answers.append((time.monotonic() - revoked_at, status))
            time.sleep(0.05)
    late = [status for elapsed, status in answers if elapsed > CACHE_SECONDS + 0.5]
    assert late and set(late) == {401}, answers
    assert {status for _elapsed, status in answers} <= {200, 401}


def test_changed_rate_limit_applies_in_every_web_process_within_the_cache_lifetime(app, test_env):
    make_recipient(external_id="ana")
    row, key = create_api_key("cached", rate_limit="1000/minute")
    admin = make_staff(role="admin")
    with gunicorn({**os.environ, **test_env}, workers=WORKERS) as base, httpx.Client(base_url=base, timeout=10) as http:
        headers = {"Authorization": f"Bearer {key}", "Connection": "close"}
        assert {http.get("/v1/users/ana", headers=headers).status_code for _ in range(10)} == {200}
        change_rate_limit(db.session.get(ApiKey, row.id), "1/hour", admin)
        time.sleep(CACHE_SECONDS + 0.5)
        statuses = [http.get("/v1/users/ana", headers=headers).status_code for _ in range(10)]
    assert statuses.count(429) >= 9, statuses  # the first hit of the new limit's window may still pass
    assert db.session.scalar(select(ApiKey.rate_limit).where(ApiKey.id == row.id)) == "1/hour"
