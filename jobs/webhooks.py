"""RQ entry point of the outbound-webhook dispatcher (:mod:`app.outbound_webhooks.dispatch`), on the ``webhooks`` queue."""

from __future__ import annotations

from app.outbound_webhooks.dispatch import dispatch as _dispatch


def dispatch() -> dict[str, int]:
    """One pass: every due message, oldest first per (endpoint, user), until none is due."""
    return dict(_dispatch())
