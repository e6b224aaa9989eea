"""The one small interface every channel adapter answers.

An adapter turns a rendered message into a provider call and reports the
outcome as a :class:`Result`; it never touches delivery rows. Adapters are
registered by name (``@register("email")``) and looked up with
:func:`adapter_for` -- nothing else in Herald branches on the channel name.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar


class Outcome(enum.Enum):
    DISPATCHED = "dispatched"      # handed to the provider; a receipt may follow
    DELIVERED = "delivered"        # the provider (or Herald itself) confirms delivery
    TRANSIENT = "transient"        # timeout, 429, 5xx: retry with backoff
    PERMANENT = "permanent"        # will never work for this message: stop now
    TOKEN_GONE = "token_gone"      # the address/token is dead: stop and deactivate it
    # The provider is unavailable *to us* (open circuit, rate limit, no free worker slot):
    # nothing was tried, so the delivery waits without spending one of its attempts.
    WAIT = "wait"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    provider: str
    provider_message_id: str | None = None
    error_code: str | None = None
    detail: str | None = None
    retry_after: float | None = None  # seconds, when the provider said so
    # The provider itself failed (5xx, timeout, refused connection): counts against its
    # circuit breaker and moves the send to the next provider of the channel, if any.
    provider_fault: bool = False
    # Devices found dead while sending (410, Unregistered...): (device id, reason), deactivated on record.
    dead_devices: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class DeviceTarget:
    """One active device of the recipient, as the push adapters need it."""

    id: int
    platform: str
    token: str              # APNs/FCM token, or the web-push endpoint URL
    p256dh: str | None = None
    auth: str | None = None


@dataclass(frozen=True)
class Message:
    """Everything an adapter needs, already rendered; no ORM objects cross this line."""

    delivery_id: int
    recipient_id: int
    notification_id: str
    channel: str
    idempotency_key: str
    recipient_external_id: str
    notification_type: str
    category: str
    priority: str
    content: dict[str, str]             # e.g. {"subject", "html", "text"} for email
    data: dict[str, Any] = field(default_factory=dict)
    address: str | None = None          # email address, phone number, ...
    collapse_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    devices: tuple[DeviceTarget, ...] = ()


class Channel:
    """Base class: subclasses set ``name`` and implement :meth:`send`.

    Class attributes tell the pipeline what a message for this channel needs,
    so nothing outside the adapters branches on channel names:
    ``address_field`` names the recipient column holding the address,
    ``platforms`` the device platforms it sends to, and ``external`` says
    whether it calls out over the network (then it gets its own job and a
    bounded share of the workers, see ``jobs.delivery``).
    """

    name: ClassVar[str]
    # How many sends of one batch may be in flight at once; only adapters whose send() is thread-safe raise it.
    concurrent_sends: ClassVar[int] = 1
    # Links in this channel's messages go through Herald's click redirect (app/delivery/tracking.py).
    tracks_links: ClassVar[bool] = False
    address_field: ClassVar[str | None] = None
    platforms: ClassVar[frozenset[str]] = frozenset()
    external: ClassVar[bool] = True

    def __init__(self, app_config: dict):
        self.config = app_config

    def send(self, message: Message) -> Result:
        raise NotImplementedError

    def close(self) -> None:
        """Release pooled connections (called when a worker shuts down)."""


_REGISTRY: dict[str, type[Channel]] = {}
_INSTANCES: dict[tuple[str, int], Channel] = {}


def register(name: str):
    def decorator(cls: type[Channel]) -> type[Channel]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def adapter_for(name: str, app_config: dict) -> Channel:
    """One adapter instance per channel per app config, so connections are reused per worker."""
    cache_key = (name, id(app_config))
    if cache_key not in _INSTANCES:
        _INSTANCES[cache_key] = _REGISTRY[name](app_config)
    return _INSTANCES[cache_key]


def registered_channels() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def channel_class(name: str) -> type[Channel] | None:
    """The adapter class registered for a channel (its class attributes, without building an instance)."""
    return _REGISTRY.get(name)


def close_all() -> None:
    for adapter in _INSTANCES.values():
        adapter.close()
    _INSTANCES.clear()
