"""Signed one-click unsubscribe links (RFC 8058) for marketing mail."""

from __future__ import annotations

from itsdangerous import BadSignature

from app.delivery.signed import serializer

SALT = "herald-unsubscribe"


def unsubscribe_token(secret: str, external_id: str, category: str) -> str:
    return serializer(secret, SALT).dumps({"u": external_id, "c": category})


def read_unsubscribe_token(secret: str, token: str) -> tuple[str, str] | None:
    """(external user id, category) from a token we signed, or None for anything else."""
    try:
        payload = serializer(secret, SALT).loads(token)
    except BadSignature:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("u"), str) or not isinstance(payload.get("c"), str):
        return None
    return payload["u"], payload["c"]


def list_unsubscribe_headers(url: str) -> dict[str, str]:
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def with_mailto(headers: dict[str, str], mailto: str | None) -> dict[str, str]:
    """Put ``<mailto:…>`` before the one-click URL when an unsubscribe mailbox is configured (RFC 2369 lists both).

    The mailbox identifies the reader by the reply's sender, as mailbox providers expect of a mailto unsubscribe.
    """
    if not mailto or "List-Unsubscribe" not in headers:
        return headers
    return {**headers, "List-Unsubscribe": f"<mailto:{mailto}?subject=unsubscribe>, {headers['List-Unsubscribe']}"}
