import os
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.extensions import db
from tests.conftest import PROJECT_ROOT


def test_migrations_produce_exactly_the_models_schema(app):
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


def test_healthz_reports_database_and_redis_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "redis": "ok"}


def test_healthz_names_redis_when_it_is_down_and_stays_in_rotation(app):
    from app.redis_client import connect

    saved = app.extensions["herald_redis"]
    app.extensions["herald_redis"] = connect("redis://127.0.0.1:1/0")
    try:
        response = app.test_client().get("/healthz")
    finally:
        app.extensions["herald_redis"] = saved
    assert response.status_code == 200  # the API still accepts without Redis
    assert response.json == {"status": "degraded: redis", "database": "ok", "redis": "down"}


def test_unknown_api_route_is_json_404(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_unknown_page_is_html_404(client):
    response = client.get("/nothing-here")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_malformed_setting_stops_the_app_with_one_clear_line(test_env):
    env = {**os.environ, "DATABASE_URL": "mysql://nope"}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "herald: configuration error: DATABASE_URL must be sqlite:// or postgresql://, got 'mysql'"
    )
