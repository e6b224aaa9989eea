"""One POST of one message: signed, refused for a non-public address, timed, never raising."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

from app.delivery.endpoints import push_endpoint_problem, resolved_address_problem
from app.outbound_webhooks import signing
from app.outbound_webhooks.policy import excerpt

_CLIENTS: dict[float, httpx.Client] = {}


@dataclass(frozen=True)
class Outgoing:
    message_id: int
    msg_id: str
    url: str
    secrets: tuple[str, ...]
    payload: dict


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    duration_ms: int
    response_excerpt: str | None = None
    error: str | None = None


def client(timeout: float) -> httpx.Client:
    """One pooled client per process (per timeout); redirects are not followed: a 3xx is a failure."""
    if timeout not in _CLIENTS:
        _CLIENTS[timeout] = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            headers={"user-agent": "Herald-Webhooks/1"},
        )
    return _CLIENTS[timeout]


def address_problem(url: str, allowed_hosts: frozenset[str]) -> str | None:
    """The web-push SSRF rules, checked again at send time against what DNS answers now."""
    problem = push_endpoint_problem(url, allowed_hosts)
    if problem:
        return problem
    return resolved_address_problem((urlparse(url).hostname or "").lower(), allowed_hosts)


def body_of(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def post(outgoing: Outgoing, timeout: float, allowed_hosts: frozenset[str]) -> Answer:
    started = time.monotonic()
    problem = address_problem(outgoing.url, allowed_hosts)
    if problem:
        return Answer(None, 0, error=f"refused: {problem}")
    body = body_of(outgoing.payload)
    headers = signing.headers(list(outgoing.secrets), outgoing.msg_id, int(time.time()), body)
    try:
        response = client(timeout).post(outgoing.url, content=body, headers=headers)
    except httpx.HTTPError as error:
        elapsed = int((time.monotonic() - started) * 1000)
        return Answer(None, elapsed, error=f"{type(error).__name__}: {error}"[:500])
    elapsed = int((time.monotonic() - started) * 1000)
    return Answer(response.status_code, elapsed, excerpt(response.text))
