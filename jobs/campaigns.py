"""RQ entry points of campaigns; planning lives in :mod:`app.campaigns.batches`, batches in :mod:`app.campaigns.fanout`."""

from __future__ import annotations

from app.campaigns.batches import plan_campaign as _plan_campaign
from app.campaigns.fanout import run_batch as _run_batch


def plan_campaign(campaign_id: int) -> int:
    return _plan_campaign(campaign_id)


def run_batch(campaign_id: int, batch_id: int) -> str:
    return _run_batch(campaign_id, batch_id)


def announce_broadcast(broadcast_id: int) -> None:
    from app.broadcasts.launch import announce

    announce(broadcast_id)


def send_deliveries(campaign_id: int, delivery_ids: list[int]) -> dict:
    """RQ job queued before the one pipeline existed; the pipeline re-checks the campaign itself."""
    from app.pipeline.deliver import deliver

    return dict(deliver(delivery_ids).counts)
