"""Error pages: JSON under /v1 and /webhooks, styled HTML elsewhere. Never a bare 500."""

from __future__ import annotations

import logging

from flask import current_app, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

# Seconds a caller is asked to wait when a dependency is down: long enough not to hammer it, short enough that
# a restart (seconds) costs little. A retry with the same Idempotency-Key never stores a notification twice.
UNAVAILABLE_RETRY_AFTER = 5


def wants_json() -> bool:
    return request.path.startswith(("/v1/", "/webhooks/", "/inbox/api/")) or request.path == "/v1"


def _json_error(status: int, code: str, message: str, errors: list | None = None):
    body = {"error": {"code": code, "message": message}}
    if errors:
        body["error"]["fields"] = errors
    return jsonify(body), status


def handle_http_error(error: HTTPException):
    if wants_json():
        response, status = _json_error(
            error.code or 500, (error.name or "error").lower().replace(" ", "_"), error.description or ""
        )
        for header in ("Retry-After", "WWW-Authenticate", "Allow"):
            if error.get_response().headers.get(header):
                response.headers[header] = error.get_response().headers[header]
        return response, status
    return render_template(
        "errors/error.html", code=error.code, name=error.name, description=error.description
    ), error.code


def handle_csrf_error(error: CSRFError):
    message = "Your form expired or was sent from another page. Reload the page and try again."
    if wants_json():
        return _json_error(400, "csrf_failed", message)
    return render_template("errors/error.html", code=400, name="Form expired", description=message), 400


def dependency_down(error: Exception) -> str | None:
    """Which dependency an exception says is unreachable ("database", "redis"), or None for a real bug."""
    if isinstance(error, (OperationalError, PoolTimeoutError)):
        return "database"
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return "database"
    if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
        return "redis"
    return None


def handle_dependency_error(error: Exception):
    """503 + Retry-After when the database (or, for pages that need it, Redis) cannot be reached; never a 500."""
    dependency = dependency_down(error)
    if dependency is None:
        return handle_unexpected(error)
    _discard_session()
    log.warning("%s unavailable on %s %s: %s", dependency, request.method, request.path, type(error).__name__)
    label = {"database": "database", "redis": "Redis"}[dependency]
    message = f"Herald cannot reach its {label} right now. Retry in {UNAVAILABLE_RETRY_AFTER} seconds."
    if wants_json():
        response, status = _json_error(503, "service_unavailable", message)
    else:
        # The page must not load the signed-in user (flask-login's context processor would, from the dead database).
        g.setdefault("_login_user", current_app.login_manager.anonymous_user())
        page = render_template("errors/error.html", code=503, name="Service unavailable", description=message)
        response, status = current_app.make_response(page), 503
    response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    return response, status


def _discard_session() -> None:
    """Drop the failed transaction; on a dead connection even the rollback can fail, which changes nothing."""
    from app.extensions import db

    try:
        db.session.rollback()
    except DBAPIError:
        db.session.invalidate()


def handle_unexpected(error: Exception):
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    if wants_json():
        return _json_error(500, "internal_error", "Something went wrong on our side; nothing was lost, retry later.")
    wrapped = InternalServerError()
    return render_template("errors/error.html", code=500, name=wrapped.name, description=wrapped.description), 500


def init_app(app) -> None:
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(DBAPIError, handle_dependency_error)
    app.register_error_handler(PoolTimeoutError, handle_dependency_error)
    app.register_error_handler(RedisConnectionError, handle_dependency_error)
    app.register_error_handler(RedisTimeoutError, handle_dependency_error)
    app.register_error_handler(Exception, handle_unexpected)
