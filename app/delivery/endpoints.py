"""Web-push endpoints must be https URLs on public hosts: Herald must never be a proxy into a private network."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def push_endpoint_problem(url: str, allow_loopback: bool = False) -> str | None:
    """Why this endpoint is unacceptable, or None. ``allow_loopback`` exists for tests only."""
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if not host:
        return "endpoint must be an absolute https URL"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if allow_loopback and (host == "localhost" or (address is not None and address.is_loopback)):
        return None if parsed.scheme in ("http", "https") else "endpoint must be an http(s) URL"
    if parsed.scheme != "https":
        return "endpoint must be an https URL"
    if host == "localhost" or host.endswith(PRIVATE_SUFFIXES) or "." not in host and address is None:
        return "endpoint must be on a public host"
    if address is not None and not address.is_global:
        return "endpoint must not point at a private, loopback or link-local address"
    return None
