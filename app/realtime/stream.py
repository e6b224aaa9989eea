"""GET /inbox/stream: the signed-in end user's live events, multiplexed through the process's hub.

There is no channel parameter: the channel is derived from the inbox session,
so asking for someone else's events cannot even be expressed. On reconnect
the browser sends ``Last-Event-ID`` (the id of the last notification event it
saw); what reached the inbox after it is replayed from the database.
"""

from __future__ import annotations

import json
import random
import threading
import time
from functools import partial

from flask import Blueprint, Response, abort, current_app, request
from flask_sse import Message

from app.broadcasts import reading as broadcasts
from app.extensions import db
from app.inbox.auth import session_access, token_access, token_refusal
from app.inbox.store import arrived_after
from app.inbox.tokens import TokenRefused
from app.models.types import utcnow
from app.realtime.hub import DRAIN, RESYNC, Hub, Subscriber, process_label
from app.realtime.publish import broadcast_channel, user_channel
from app.redis_client import connect, key

bp = Blueprint("realtime", __name__)

KEEPALIVE = ": keepalive\n\n"
# Sent as a stream's last event when the user token it was opened with expires; the page asks its host for a new one.
TOKEN_EXPIRED = str(Message({"reason": "expired"}, type="token_expired"))
RECONNECT_MS = 2000
REPLAY_LIMIT = 100
REPLAY_OVERLAP_SECONDS = 5.0
HUB_EXTENSION = "herald_sse_hub"
_hub_lock = threading.Lock()
# When a stopping web process ends its streams, browsers come back after a random 0.5-3 s, not all at once.
DRAIN_RETRY_MS = (500, 3000)
_stopping = threading.Event()


def stopping() -> bool:
    """True once :func:`drain_streams` ran in this process: long responses should end with :func:`final_retry`."""
    return _stopping.is_set()


def final_retry() -> str:
    """The last line of a drained stream: the browser's EventSource reconnects after this many milliseconds."""
    return f"retry: {random.randint(*DRAIN_RETRY_MS)}\n\n"


def drain_streams(app) -> int:
    """The web process is stopping (gunicorn's SIGTERM, see app/gunicorn_config.py): end every event stream.

    Returns how many inbox streams were open. Their browsers reconnect to whichever web process the load
    balancer picks and replay what they missed by ``Last-Event-ID``.
    """
    _stopping.set()
    hub = app.extensions.get(HUB_EXTENSION)
    return hub.drain() if hub is not None else 0


def hub_client_name(prefix: str) -> str:
    return f"{prefix}:sse-hub"


CLIENT_COUNT_TTL = 10


def client_count_key(label: str = "*") -> str:
    """Per process: how many streams it holds, refreshed every half second, gone 10 s after the process is."""
    return key("sse", "clients", label)


def get_hub() -> Hub:
    """This process's hub, created on the first stream request."""
    app = current_app._get_current_object()
    with _hub_lock:
        hub = app.extensions.get(HUB_EXTENSION)
        if hub is None:
            count_key = client_count_key(process_label())
            reporter = connect(app.config["REDIS_URL"], max_connections=1)
            hub = Hub(
                app.config["REDIS_URL"],
                pattern=user_channel("*"),
                client_name=hub_client_name(app.config["REDIS_PREFIX"]),
                on_count=lambda count: reporter.set(count_key, count, ex=CLIENT_COUNT_TTL),
                broadcast_channel=broadcast_channel(),
                on_broadcast=partial(broadcast_events, app, user_channel("")),
            )
            app.extensions[HUB_EXTENSION] = hub
    return hub


def broadcast_events(app, channel_prefix: str, data: bytes, channels: list[str]) -> dict[str, str]:
    """A broadcast launched: the ``notification`` event each targeted stream open here gets (the page reloads
    its list, which shows it); streams outside the audience hear nothing."""
    broadcast_id = int(json.loads(data)["data"]["broadcast"])
    by_recipient = {int(c[len(channel_prefix) :]): c for c in channels if c[len(channel_prefix) :].isdigit()}
    with app.app_context():
        try:
            targeted = broadcasts.targeted_among(broadcast_id, sorted(by_recipient), utcnow())
        finally:
            db.session.remove()
    events = {}
    for recipient_id in targeted:
        item = broadcasts.item_id(broadcast_id, recipient_id)
        events[by_recipient[recipient_id]] = str(Message({"id": item, "broadcast": True}, type="notification", id=item))
    return events


def notification_event(notification) -> str:
    """The same event the in-app channel publishes, rebuilt from the inbox row."""
    data = {"id": notification.id, "title": notification.title, "category": notification.category}
    return str(Message(data, type="notification", id=notification.id))


def replay(recipient_id: int, last_event_id: str | None) -> list[str]:
    """Events missed since ``last_event_id``; a single resync when they cannot be listed exactly."""
    if not last_event_id:
        return []
    missed = arrived_after(recipient_id, last_event_id[:64], REPLAY_OVERLAP_SECONDS, REPLAY_LIMIT + 1)
    if missed is None or len(missed) > REPLAY_LIMIT:
        return [RESYNC]
    return [notification_event(n) for n in missed]


class EventStream:
    """The response body. ``close()`` runs when the server gives up on the client, whether or not
    iteration started; under gevent a write to a closed socket fails at the next heartbeat at the latest."""

    def __init__(
        self, hub: Hub, subscriber: Subscriber, backlog: list[str], heartbeat: float, until: float | None = None
    ):
        self.hub, self.subscriber, self.backlog, self.heartbeat = hub, subscriber, backlog, heartbeat
        self.until = until  # a stream opened with a user token ends when the token does

    def __iter__(self):
        yield f"retry: {RECONNECT_MS}\n\n"
        yield from self.backlog
        while True:
            left = None if self.until is None else self.until - time.time()
            if left is not None and left <= 0:
                yield TOKEN_EXPIRED
                return
            event = self.subscriber.next_event(self.heartbeat if left is None else min(self.heartbeat, left))
            if event == DRAIN:
                yield final_retry()
                return
            yield KEEPALIVE if event is None else event

    def close(self) -> None:
        self.hub.unsubscribe(self.subscriber)


@bp.get("/inbox/stream")
def stream():
    """Authorised by the inbox session, or a user token with the ``stream`` scope (header, or ``access_token``
    in the query string since EventSource cannot send headers)."""
    try:
        access = token_access("stream", allow_query=True) or session_access("stream")
    except TokenRefused as error:
        return token_refusal(error)
    if access is None:
        abort(401, "Sign in to your inbox first.")
    recipient = access.recipient
    last_event_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    hub = get_hub()
    # Subscribe before reading the database, so an event landing in between is queued, not lost.
    subscriber = hub.subscribe(user_channel(recipient.id))
    try:
        backlog = replay(recipient.id, last_event_id)
    except Exception:
        hub.unsubscribe(subscriber)
        raise
    body = EventStream(hub, subscriber, backlog, current_app.config["SSE_HEARTBEAT_SECONDS"], access.expires_at)
    return Response(
        body, mimetype="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
