"""API-key authentication and per-key rate limits for /v1."""

from __future__ import annotations

from flask import abort, g, jsonify, request
from limits.strategies import FixedWindowRateLimiter

from app.api.keys import find_active_key
from app.api.operations import OPERATION_SCOPES
from app.api.scopes import missing_scope, openapi_path
from app.extensions import limiter
from app.redis_outage import charge_api_key

PUBLIC_ENDPOINTS = {"api.openapi_document", "api.docs"}


def _unauthorized(message: str):
    response = jsonify({"error": {"code": "unauthorized", "message": message}})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="herald"'
    abort(response)


def _too_many(retry_after: int, rate: str):
    response = jsonify(
        {
            "error": {
                "code": "rate_limited",
                "message": f"rate limit of {rate} for this API key exceeded; retry in {retry_after}s",
            }
        }
    )
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    abort(response)


def _forbidden(scope: str):
    response = jsonify(
        {
            "error": {
                "code": "insufficient_scope",
                "missing_scope": scope,
                "message": f"this API key lacks the {scope!r} scope this operation needs",
            }
        }
    )
    response.status_code = 403
    response.headers["WWW-Authenticate"] = f'Bearer realm="herald", error="insufficient_scope", scope="{scope}"'
    abort(response)


def required_scope() -> str | None:
    """The scope the matched operation declares in the OpenAPI table (HEAD is GET)."""
    method = "get" if request.method == "HEAD" else request.method.lower()
    return OPERATION_SCOPES.get((method, openapi_path(request.url_rule.rule)))


def authenticate() -> None:
    """Blueprint before_request: resolve the Bearer key, charge it one request, then check its scope."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        _unauthorized("send your API key as 'Authorization: Bearer <key>'")
    api_key = find_active_key(token.strip())
    if api_key is None:
        _unauthorized("unknown or revoked API key")
    g.api_key = api_key
    _charge(api_key.id, api_key.rate_limit)
    if request.method != "OPTIONS":
        lacking = missing_scope(required_scope(), api_key.scopes)
        if lacking:
            _forbidden(lacking)


def _charge(api_key_id: int, rate: str) -> None:
    if not limiter.enabled:
        return
    charge = charge_api_key(FixedWindowRateLimiter(limiter.storage), api_key_id, rate)
    if not charge.allowed:
        _too_many(charge.retry_after, rate)
