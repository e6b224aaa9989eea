"""Publish realtime events in Flask-SSE's wire format over Herald's shared Redis connection.

``flask_sse.sse.publish`` opens a new Redis client per call; a worker
publishing thousands of in-app events per second cannot afford that, so this
mirrors its signature and message format (``flask_sse.Message``) but reuses
the app's connection. Channels are per recipient and derived on the server.
"""

from __future__ import annotations

import json
from functools import cache

from flask_sse import Message

from app.redis_client import get_redis, key


def user_channel(recipient_id: int) -> str:
    return key("sse", "user", recipient_id)


def wire_message(data, type: str | None = None, id: str | None = None, retry: int | None = None) -> str:
    """The message as Flask-SSE publishes it (its stream reads this format back)."""
    return json.dumps(Message(data, type=type, id=id, retry=retry).to_dict())


def publish(
    data, type: str | None = None, id: str | None = None, retry: int | None = None, channel: str = "sse", pipeline=None
) -> None:
    (pipeline or get_redis()).publish(channel, wire_message(data, type=type, id=id, retry=retry))


def publish_to_user(recipient_id: int, event_type: str, data: dict, event_id: str | None = None, pipeline=None) -> None:
    publish(data, type=event_type, id=event_id, channel=user_channel(recipient_id), pipeline=pipeline)


# A batch's events in ONE Redis command: a script publishes each on the server (a pipeline of one PUBLISH per
# recipient cost more in redis-py's packing and reply parsing than in Redis). Registered once per process, run on
# whichever client the caller has (redis-py loads it there on first use).
_PUBLISH_EACH = "for i, channel in ipairs(KEYS) do redis.call('PUBLISH', channel, ARGV[i]) end return #KEYS"


@cache
def _publish_each():
    return get_redis().register_script(_PUBLISH_EACH)


def publish_to_users(event_type: str, events: list[tuple[int, dict, str | None]]) -> None:
    """``(recipient id, data, event id)``: each on its recipient's channel, the message :func:`publish_to_user`
    sends, all in one round trip."""
    if not events:
        return
    _publish_each()(
        keys=[user_channel(recipient_id) for recipient_id, _data, _id in events],
        args=[wire_message(data, type=event_type, id=event_id) for _r, data, event_id in events],
        client=get_redis(),
    )


def broadcast_channel() -> str:
    """Where a broadcast's launch is announced. Named under the user channels' pattern, so the hub's one
    subscription hears it; no recipient id is ever the word ``broadcast``."""
    return key("sse", "user", "broadcast")
