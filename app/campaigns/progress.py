"""A campaign's live counters: one Redis hash per campaign, incremented in the batch's pipeline.

Fields: ``planned``, ``notified``, ``sent:<channel>``, ``suppressed:<reason>``,
``failed`` and ``status``. Redis keeps nothing on disk here, so the database
stays the truth: :func:`read` rebuilds a lost hash from the delivery rows.
"""
from __future__ import annotations

from app.redis_client import get_redis, key


def progress_key(campaign_id: int) -> str:
    return key("campaign", campaign_id, "progress")


def add(pipe, campaign_id: int, counts: dict[str, int]) -> None:
    """Queue HINCRBYs on ``pipe`` (the caller executes it with its other commands)."""
    name = progress_key(campaign_id)
    for field, amount in counts.items():
        if amount:
            pipe.hincrby(name, field, amount)


def set_status(campaign_id: int, status: str, planned: int | None = None) -> None:
    mapping = {"status": status}
    if planned is not None:
        mapping["planned"] = planned
    get_redis().hset(progress_key(campaign_id), mapping=mapping)


def parse(raw: dict) -> tuple[str | None, dict[str, int]]:
    """(status, numeric counters) from a raw HGETALL answer."""
    status, counters = None, {}
    for field, value in raw.items():
        field = field.decode() if isinstance(field, bytes) else field
        value = value.decode() if isinstance(value, bytes) else value
        if field == "status":
            status = value
        else:
            counters[field] = int(value)
    return status, counters


def read(campaign_id: int, status: str, planned: int) -> dict[str, int]:
    """The counters, rebuilt from the database if Redis lost them."""
    raw = get_redis().hgetall(progress_key(campaign_id))
    _status, counters = parse(raw)
    if "status" not in {(f.decode() if isinstance(f, bytes) else f) for f in raw}:
        from app.campaigns.fanout import delivery_counts

        counters = delivery_counts(campaign_id)
        counters["planned"] = planned
        pipe = get_redis().pipeline()
        pipe.delete(progress_key(campaign_id))
        pipe.hset(progress_key(campaign_id), mapping={**counters, "status": status})
        pipe.execute()
    return counters
