"""Publish realtime events in Flask-SSE's wire format over Herald's shared Redis connection.

``flask_sse.sse.publish`` opens a new Redis client per call; a worker
publishing thousands of in-app events per second cannot afford that, so this
mirrors its signature and message format (``flask_sse.Message``) but reuses
the app's connection. Channels are per recipient and derived on the server.
"""

from __future__ import annotations

import json

from flask_sse import Message

from app.redis_client import get_redis, key


def user_channel(recipient_id: int) -> str:
    return key("sse", "user", recipient_id)


def publish(
    data, type: str | None = None, id: str | None = None, retry: int | None = None, channel: str = "sse", pipeline=None
) -> None:
    message = json.dumps(Message(data, type=type, id=id, retry=retry).to_dict())
    (pipeline or get_redis()).publish(channel, message)


def publish_to_user(recipient_id: int, event_type: str, data: dict, event_id: str | None = None, pipeline=None) -> None:
    publish(data, type=event_type, id=event_id, channel=user_channel(recipient_id), pipeline=pipeline)


def broadcast_channel() -> str:
    """Where a broadcast's launch is announced. Named under the user channels' pattern, so the hub's one
    subscription hears it; no recipient id is ever the word ``broadcast``."""
    return key("sse", "user", "broadcast")
