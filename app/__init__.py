"""Herald: a self-hosted multi-channel notification service."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, send_from_directory
from flask.sessions import SecureCookieSessionInterface

from app import config as settings
from app.db_pool import ping_idle_connections
from app.extensions import csrf, db, htmx, limiter, login_manager, migrate

PROJECT_ROOT = settings.PROJECT_ROOT


def create_app(config: dict | None = None) -> Flask:
    """Build the application. ``config`` overrides what the environment says."""
    values = settings.from_environment()
    values.update(config or {})
    app = Flask(
        __name__,
        instance_path=values["INSTANCE_PATH"],
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(values)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from app import models, redis_client  # noqa: F401  (models registers the tables)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), compare_type=True)
    redis_client.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)
    # Redis down must not make rate-limited routes fail: the console's limits fall back to this process's memory
    # (the API's per-key limits do the same in app/redis_outage.py), and no limit check waits long on a dead server.
    storage_uri, storage_options = redis_client.limits_storage(
        app.config["REDIS_URL"], {"socket_connect_timeout": 1, "socket_timeout": 1}
    )
    app.config.setdefault("RATELIMIT_STORAGE_URI", storage_uri)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", app.config["REDIS_PREFIX"] + ":limits")
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", storage_options)
    limiter.init_app(app)
    login_manager.init_app(app)

    from app import auth, cli, errors, health  # noqa: F401  (auth registers the user loader)
    from app.api import bp as api_bp
    from app.console import bookmarks as console_bookmarks_bp
    from app.console import bp as console_bp
    from app.inbox import bp as inbox_bp
    from app.inbox.embed import bp as inbox_api_bp
    from app.metrics import bp as metrics_bp
    from app.realtime.stream import bp as realtime_bp
    from app.webhooks import bp as webhooks_bp

    app.register_blueprint(health.bp)
    app.register_blueprint(console_bp)
    app.register_blueprint(console_bookmarks_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(inbox_bp)
    app.register_blueprint(inbox_api_bp)
    app.register_blueprint(realtime_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(metrics_bp)
    _keep_browser_machinery_off_the_api(app, console_bp, token_authenticated=(webhooks_bp, api_bp, inbox_api_bp))
    app.add_url_rule("/favicon.ico", "favicon", _favicon)
    errors.init_app(app)
    cli.init_app(app)
    _configure_connections(app)
    return app


class CookieSessionOutsideApi(SecureCookieSessionInterface):
    """/v1 is authenticated by API key and never by cookie: its requests neither open nor save the signed session
    (building the signer alone cost every accept tens of microseconds); writing to it there raises."""

    def open_session(self, app, request):
        if request.path.startswith("/v1/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def _keep_browser_machinery_off_the_api(app: Flask, console_bp, token_authenticated) -> None:
    """No CSRF check on the ``token_authenticated`` blueprints (a key or token in a header, never a cookie: nothing
    to forge), no cookie session on /v1 (:class:`CookieSessionOutsideApi`), and Flask-Limiter's hooks only where
    its limits are (the console's sign-in), not on every request of the app.

    /v1 is limited per API key (app/api/auth.py) and nothing else declares a Flask-Limiter limit, yet its
    app-wide before/after/teardown pass cost each accept more than its idempotency check's Python.
    """
    for blueprint in token_authenticated:
        csrf.exempt(blueprint)
    app.session_interface = CookieSessionOutsideApi()

    def ours(hook) -> bool:
        return getattr(hook, "__self__", None) is limiter or limiter in getattr(hook, "args", ())

    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        moved = [hook for hook in hooks.get(None, []) if ours(hook)]
        if not moved:  # a check that must hold under ``python -O`` too
            raise RuntimeError("Flask-Limiter registers its hooks differently: check its init_app")
        hooks[None] = [hook for hook in hooks[None] if not ours(hook)]
        hooks[console_bp.name] = moved + hooks.get(console_bp.name, [])


def _favicon():
    """Browsers ask for /favicon.ico whatever the page links to."""
    return send_from_directory(
        PROJECT_ROOT / "static", "favicon.ico", mimetype="image/vnd.microsoft.icon", max_age=86400
    )


def _configure_connections(app: Flask) -> None:
    with app.app_context():
        ping_idle_connections(db.engine)  # app/db_pool.py: instead of a pre-ping on every checkout
    _enable_sqlite_concurrency(app)


def _enable_sqlite_concurrency(app: Flask) -> None:
    """WAL + a busy timeout let web, workers and scheduler share one SQLite file."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    from sqlalchemy import event

    with app.app_context():

        @event.listens_for(db.engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
