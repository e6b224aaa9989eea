"""Error pages: JSON under /v1 and /webhooks, styled HTML elsewhere. Never a bare 500."""
from __future__ import annotations

import logging

from flask import jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


def wants_json() -> bool:
    return request.path.startswith(("/v1/", "/webhooks/")) or request.path == "/v1"


def _json_error(status: int, code: str, message: str, errors: list | None = None):
    body = {"error": {"code": code, "message": message}}
    if errors:
        body["error"]["fields"] = errors
    return jsonify(body), status


def handle_http_error(error: HTTPException):
    if wants_json():
        response, status = _json_error(error.code or 500, (error.name or "error").lower().replace(" ", "_"), error.description or "")
        for header in ("Retry-After", "WWW-Authenticate", "Allow"):
            if error.get_response().headers.get(header):
                response.headers[header] = error.get_response().headers[header]
        return response, status
    return render_template("errors/error.html", code=error.code, name=error.name, description=error.description), error.code


def handle_csrf_error(error: CSRFError):
    message = "Your form expired or was sent from another page. Reload the page and try again."
    if wants_json():
        return _json_error(400, "csrf_failed", message)
    return render_template("errors/error.html", code=400, name="Form expired", description=message), 400


def handle_unexpected(error: Exception):
    log.exception("unhandled error on %s %s", request.method, request.path)
    if wants_json():
        return _json_error(500, "internal_error", "Something went wrong on our side; nothing was lost, retry later.")
    wrapped = InternalServerError()
    return render_template("errors/error.html", code=500, name=wrapped.name, description=wrapped.description), 500


def init_app(app) -> None:
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
