"""API-key authentication and per-key rate limits for /v1."""
from __future__ import annotations

import time

from flask import abort, g, jsonify, request
from limits import parse

from app.api.keys import find_active_key
from app.extensions import limiter

PUBLIC_ENDPOINTS = {"api.openapi_document", "api.docs"}


def _unauthorized(message: str):
    response = jsonify({"error": {"code": "unauthorized", "message": message}})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="herald"'
    abort(response)


def _too_many(retry_after: int, rate: str):
    response = jsonify({"error": {"code": "rate_limited", "message": f"rate limit of {rate} for this API key exceeded; retry in {retry_after}s"}})
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    abort(response)


def authenticate() -> None:
    """Blueprint before_request: resolve the Bearer key, then charge it one request."""
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


def _charge(api_key_id: int, rate: str) -> None:
    if not limiter.enabled:
        return
    item = parse(rate)
    strategy = limiter.limiter
    if not strategy.hit(item, "api-key", str(api_key_id)):
        reset_at, _remaining = strategy.get_window_stats(item, "api-key", str(api_key_id))
        _too_many(max(1, int(reset_at - time.time()) + 1), rate)
