"""What the HTTP-based adapters share: one pooled client per adapter instance, and status classification."""

from __future__ import annotations

import logging
from email.utils import parsedate_to_datetime

import httpx

from app.channels.base import Outcome, Result
from app.models.types import utcnow

# httpx logs every request at INFO: a line per push at a thousand pushes a second.
logging.getLogger("httpx").setLevel(logging.WARNING)


def pooled_client(config: dict, http2: bool = False, prior_knowledge: bool = False, **options) -> httpx.Client:
    """A keep-alive client with short connect timeouts, so a dead provider fails fast.

    ``prior_knowledge`` speaks HTTP/2 without TLS (h2c); only loopback test peers need it.
    """
    timeout = httpx.Timeout(config.get("PROVIDER_TIMEOUT", 10.0), connect=config.get("PROVIDER_CONNECT_TIMEOUT", 3.0))
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60)
    return httpx.Client(http2=http2, http1=not prior_knowledge, timeout=timeout, limits=limits, **options)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def transport_failure(provider: str, error: httpx.HTTPError) -> Result:
    """Timeouts and refused connections: the provider's fault, retry and count against its circuit."""
    return Result(
        Outcome.TRANSIENT,
        provider,
        error_code="connection_error",
        detail=f"{type(error).__name__}: {error}"[:500],
        provider_fault=True,
    )


def throttled_or_down(provider: str, response: httpx.Response, code: str | None = None) -> Result | None:
    """The Result for a 429 or a 5xx, or None for any other status."""
    if response.status_code == 429:
        return Result(
            Outcome.TRANSIENT,
            provider,
            error_code=code or "http_429",
            detail=response.text[:500],
            retry_after=retry_after(response),
        )
    if response.status_code >= 500:
        return Result(
            Outcome.TRANSIENT,
            provider,
            error_code=code or f"http_{response.status_code}",
            detail=response.text[:500],
            retry_after=retry_after(response),
            provider_fault=True,
        )
    return None
