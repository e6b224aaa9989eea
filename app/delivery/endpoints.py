"""Web-push endpoints must be https URLs on public hosts: Herald must never be a proxy into a private network.

The one exception is the operator's own: a push service on their network whose host they list in
``HERALD_WEB_PUSH_PRIVATE_HOSTS`` (a self-hosted push server); only those exact hosts pass, over http too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from urllib.parse import urlparse

PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def push_endpoint_problem(url: str, private_hosts: Collection[str] = frozenset()) -> str | None:
    """Why this endpoint is unacceptable, or None. ``private_hosts`` are the operator's own push services."""
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if not host:
        return "endpoint must be an absolute https URL"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if host in private_hosts:
        return None if parsed.scheme in ("http", "https") else "endpoint must be an http(s) URL"
    if parsed.scheme != "https":
        return "endpoint must be an https URL"
    if host == "localhost" or host.endswith(PRIVATE_SUFFIXES) or "." not in host and address is None:
        return "endpoint must be on a public host"
    if address is not None and not address.is_global:
        return "endpoint must not point at a private, loopback or link-local address"
    return None


def resolved_address_problem(host: str, private_hosts: Collection[str] = frozenset(), resolve=None) -> str | None:
    """Why the addresses ``host`` resolves to are unacceptable, or None.

    A public name can point at 10.0.0.5 (or be re-pointed after the
    subscription was accepted), so the check at registration is repeated at
    send time against what DNS answers now. ``resolve`` defaults to
    :func:`socket.getaddrinfo`; tests pass their own. A host the operator listed as theirs is not checked.
    """
    import socket

    if host in private_hosts:
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
        if not address.is_global:
            return f"endpoint host {host!r} resolves to a non-public address ({address})"
    return None
