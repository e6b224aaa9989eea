"""One Redis subscription per web process, fanned out to the streams open in that process.

Flask-SSE subscribes once per browser, so 5,000 open inboxes cost 5,000 Redis
connections. The hub instead holds one pub/sub connection (named, so
``CLIENT LIST`` shows it), pattern-subscribed to every user channel, and puts
each message on the local queue of the streams listening to that channel.
Under ``gunicorn -k gevent`` the listener thread is a greenlet and the queues
are gevent queues (the worker monkey-patches ``threading`` and ``queue``).

If the subscription drops, messages published meanwhile are gone; every
stream is then told to ``resync`` (the page reloads its list from the
database, which is the truth). A stream too slow to keep up with its queue is
told the same instead of being allowed to grow without bound.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time

import redis
from flask_sse import Message

from app.redis_client import connect

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
REPORT_SECONDS = 0.5
RESYNC = str(Message({"reason": "missed"}, type="resync"))
# Not sent as is: the stream ends on it with a final ``retry:`` (see app/realtime/stream.py).
DRAIN = ": this server is stopping\n\n"


class Subscriber:
    """One open stream's mailbox."""

    def __init__(self, channel: str, maxsize: int = QUEUE_SIZE):
        self.channel = channel
        self._queue: queue.Queue[str] = queue.Queue(maxsize)
        self._overflowed = False
        self._draining = False

    def deliver(self, event: str) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._overflowed = True

    def drain(self) -> None:
        """Make the stream end: its next (or pending) ``next_event`` answers :data:`DRAIN`."""
        self._draining = True
        try:
            self._queue.put_nowait(DRAIN)  # wakes a waiting next_event; a full queue wakes it anyway
        except queue.Full:
            pass

    def next_event(self, timeout: float) -> str | None:
        """The next wire-format event, a resync if events were dropped, :data:`DRAIN` once drained, or None after
        ``timeout``. Events still queued when the stream is drained are dropped: the reconnect replays them."""
        if self._draining:
            return DRAIN
        if self._overflowed:
            self._overflowed = False
            while not self._queue.empty():
                self._queue.get_nowait()
            return RESYNC
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return DRAIN if self._draining else event


def wire_format(raw: bytes | str) -> str | None:
    """Flask-SSE's stored JSON (``Message.to_dict``) -> the text sent to the browser, once per message."""
    try:
        fields = json.loads(raw)
        return str(Message(fields["data"], type=fields.get("type"), id=fields.get("id"), retry=fields.get("retry")))
    except (ValueError, KeyError, TypeError):
        log.warning("dropping a realtime message that is not in Flask-SSE's format")
        return None


class Hub:
    def __init__(
        self,
        redis_url: str,
        pattern: str,
        client_name: str,
        on_count=None,
        ready_timeout: float = 5.0,
        broadcast_channel: str | None = None,
        on_broadcast=None,
    ):
        self.redis_url, self.pattern, self.client_name = redis_url, pattern, client_name
        # A message on ``broadcast_channel`` (under ``pattern``) is for no stream as such: ``on_broadcast(data,
        # channels)`` says which of the channels open here get which event (app/broadcasts/).
        self.broadcast_channel, self._on_broadcast = broadcast_channel, on_broadcast
        # Called from the listener thread only, about once a second: reporting per connect would
        # make every concurrent connect borrow its own pooled Redis connection.
        self._on_count = on_count
        self._ready_timeout = ready_timeout
        self._channels: dict[str, set[Subscriber]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._count = 0
        self._confirmed = False
        self._draining = False

    @property
    def client_count(self) -> int:
        return self._count

    def subscribe(self, channel: str) -> Subscriber:
        """Register a stream; returns once the Redis subscription is live, so nothing published after is missed."""
        subscriber = Subscriber(channel)
        with self._lock:
            self._channels.setdefault(channel, set()).add(subscriber)
            self._count += 1
            if self._draining:
                subscriber.drain()
                return subscriber
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sse-hub", daemon=True)
                self._thread.start()
        if not self._ready.wait(self._ready_timeout):
            subscriber.deliver(RESYNC)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            listeners = self._channels.get(subscriber.channel)
            if listeners is None or subscriber not in listeners:
                return
            listeners.discard(subscriber)
            if not listeners:
                del self._channels[subscriber.channel]
            self._count -= 1

    def stop(self) -> None:
        self._stop.set()

    def drain(self) -> int:
        """The process is stopping: end every open stream (and any opened from now on) and stop listening.

        Returns how many streams were told. Each ends with a final ``retry:``, so its browser reconnects --
        behind a load balancer, to another web process -- and replays what it missed by ``Last-Event-ID``.
        """
        with self._lock:
            self._draining = True
            listeners = [s for subscribers in self._channels.values() for s in subscribers]
        for subscriber in listeners:
            subscriber.drain()
        self.stop()
        return len(listeners)

    def _report(self) -> None:
        if self._on_count is not None:
            try:
                self._on_count(self._count)
            except (redis.RedisError, OSError):
                log.warning("could not record the SSE client count")

    def _fan_out(self, channel: str, event: str) -> None:
        with self._lock:
            listeners = list(self._channels.get(channel, ()))
        for subscriber in listeners:
            subscriber.deliver(event)

    def _resync_everyone(self) -> None:
        with self._lock:
            listeners = [s for subscribers in self._channels.values() for s in subscribers]
        for subscriber in listeners:
            subscriber.deliver(RESYNC)

    def _run(self) -> None:
        """Listen until stopped. Any failure -- a lost connection or a bug -- is logged and followed by a
        reconnect with backoff and a resync, never by a silently dead thread and streams that stay quiet."""
        backoff = 0.1
        reconnecting = False
        while not self._stop.is_set():
            connection = pubsub = None
            self._confirmed = unexpected = False
            try:
                connection = connect(self.redis_url, client_name=self.client_name, socket_keepalive=True)
                pubsub = connection.pubsub()
                self._listen(pubsub, resync=reconnecting)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                log.warning("SSE hub lost its Redis subscription (%s); reconnecting", error)
            except Exception:
                log.exception("SSE hub failed unexpectedly; reconnecting")
                unexpected = True
            finally:
                _close_quietly(pubsub, connection)
            if self._stop.is_set():
                return
            reconnecting = True
            # A connection that was live and dropped retries at once; a failure that repeats (Redis still away,
            # or a bug) waits longer each time, so it cannot fill the log.
            backoff = 0.2 if self._confirmed and not unexpected else min(backoff * 2, 5.0)
            time.sleep(backoff)

    def _listen(self, pubsub, resync: bool) -> None:
        pubsub.psubscribe(self.pattern)
        # Live only once Redis confirms; a publish before that would be lost.
        confirmation = pubsub.get_message(timeout=5.0)
        if not confirmation or confirmation["type"] != "psubscribe":
            raise redis.ConnectionError("Redis did not confirm the subscription")
        self._confirmed = True
        self._ready.set()
        if resync:
            self._resync_everyone()
        reported_at = 0.0
        while not self._stop.is_set():
            if time.monotonic() - reported_at >= REPORT_SECONDS:
                self._report()
                reported_at = time.monotonic()
            message = pubsub.get_message(timeout=REPORT_SECONDS)
            if message is None or message["type"] != "pmessage":
                continue
            channel = message["channel"].decode()
            if channel == self.broadcast_channel and self._on_broadcast is not None:
                self._broadcast(message["data"])
                continue
            event = wire_format(message["data"])
            if event is not None:
                self._fan_out(channel, event)

    def _broadcast(self, data: bytes) -> None:
        """One event for many: ask which local streams it is for. If that fails, every stream resyncs from the
        database (the truth), rather than anyone missing it."""
        with self._lock:
            channels = list(self._channels)
        if not channels:
            return
        try:
            events = self._on_broadcast(data, channels)
        except Exception:
            log.exception("could not work out who a broadcast is for; every stream resyncs")
            self._resync_everyone()
            return
        for channel, event in events.items():
            self._fan_out(channel, event)


def _close_quietly(*resources) -> None:
    for resource in resources:
        if resource is not None:
            try:
                resource.close()
            except (redis.RedisError, OSError):
                pass


def process_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
