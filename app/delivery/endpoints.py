"""Web-push endpoints must be https URLs on public hosts: Herald must never be a proxy into a private network."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def push_endpoint_problem(url: str, allow_loopback: bool = False, allowed_hosts: frozenset[str] = frozenset()) -> str | None:
    """Why this endpoint is unacceptable, or None. ``allow_loopback`` exists for tests only.

    ``allowed_hosts`` (outbound webhooks' ``HERALD_WEBHOOK_ALLOWED_HOSTS``) names hosts an operator chose to
    trust: http or https, private or loopback.
    """
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if not host:
        return "endpoint must be an absolute https URL"
    if host in allowed_hosts:
        return None if parsed.scheme in ("http", "https") else "endpoint must be an http(s) URL"
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


def resolved_address_problem(host: str, allow_loopback: bool = False, resolve=None,
                             allowed_hosts: frozenset[str] = frozenset()) -> str | None:
    """Why the addresses ``host`` resolves to are unacceptable, or None.

    A public name can point at 10.0.0.5 (or be re-pointed after the
    subscription was accepted), so the check at registration is repeated at
    send time against what DNS answers now. ``resolve`` defaults to
    :func:`socket.getaddrinfo`; tests pass their own.
    """
    import socket

    if host.lower() in allowed_hosts:
        return None
    resolve = resolve or socket.getaddrinfo
    try:
        infos = resolve(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return f"endpoint host {host!r} does not resolve"
    if not infos:
        return f"endpoint host {host!r} does not resolve"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if allow_loopback and address.is_loopback:
            continue
        if not address.is_global:
            return f"endpoint host {host!r} resolves to a non-public address ({address})"
    return None
