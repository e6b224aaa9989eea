"""The one small interface every channel adapter answers.

An adapter turns a rendered message into a provider call and reports the
outcome as a :class:`Result`; it never touches delivery rows. Adapters are
registered by name (``@register("email")``) and looked up with
:func:`adapter_for`.

The registry is also the one place that knows what a channel *is*: its
label, where it sits in lists, its address field, device platforms, content
fields, whether it calls out over the network... Each adapter class declares
these once; the API schema, the console, the inbox's preference grid, the
audience filter and routing read them through the functions at the end of
this module -- nothing else in Herald compares a value to a channel name.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


class Outcome(enum.Enum):
    DISPATCHED = "dispatched"  # handed to the provider; a receipt may follow
    DELIVERED = "delivered"  # the provider (or Herald itself) confirms delivery
    TRANSIENT = "transient"  # timeout, 429, 5xx: retry with backoff
    PERMANENT = "permanent"  # will never work for this message: stop now
    TOKEN_GONE = "token_gone"  # the address/token is dead: stop and deactivate it
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
    token: str  # APNs/FCM token, or the web-push endpoint URL
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
    content: dict[str, str]  # e.g. {"subject", "html", "text"} for email
    data: dict[str, Any] = field(default_factory=dict)
    address: str | None = None  # email address, phone number, ...
    collapse_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    devices: tuple[DeviceTarget, ...] = ()


class Channel:
    """Base class: subclasses set the class attributes below and implement :meth:`send`.

    Class attributes tell the rest of Herald what the channel is and what a
    message for it needs, so nothing outside the adapters branches on names.
    ``external`` says whether it calls out over the network (then it gets its
    own job and a bounded share of the workers, see ``jobs.delivery``).
    """

    name: ClassVar[str]
    label: ClassVar[str]  # what people read: console, inbox, errors
    order: ClassVar[int]  # place in every list of channels (API enum, console, analytics)
    # Order a notification's channels are sent in: instant and cheap first, slow and costly last.
    send_order: ClassVar[int]
    # Column in the inbox preference grid; None keeps the channel out of the grid.
    preference_column: ClassVar[int | None] = None
    # How many sends of one batch may be in flight at once; only adapters whose send() is thread-safe raise it.
    concurrent_sends: ClassVar[int] = 1
    # Links in this channel's messages go through Herald's click redirect (app/delivery/tracking.py).
    tracks_links: ClassVar[bool] = False
    # Marketing messages carry a one-click unsubscribe (List-Unsubscribe, RFC 8058).
    one_click_unsubscribe: ClassVar[bool] = False
    address_field: ClassVar[str | None] = None  # the recipient column holding the address
    address_case_sensitive: ClassVar[bool] = True
    platforms: ClassVar[frozenset[str]] = frozenset()  # device platforms it sends to
    external: ClassVar[bool] = True
    # The inbox's channel: its content is rendered into the notification row, which is what the inbox shows.
    is_inbox: ClassVar[bool] = False
    interrupts: ClassVar[bool] = False  # waits out the recipient's quiet hours
    marketing_needs_opt_in: ClassVar[bool] = False  # marketing only after an explicit opt-in
    content_fields: ClassVar[tuple[str, ...]] = ()  # the fields a template variant provides
    optional_fields: ClassVar[frozenset[str]] = frozenset()
    field_limits: ClassVar[Mapping[str, int]] = {}  # longest rendered text per field
    # A channel without variants of its own renders with this channel's variant.
    template_fallback: ClassVar[str | None] = None
    # What the template editor's preview measures: SMS segments, or the provider payload against its limit.
    billed_in_segments: ClassVar[bool] = False
    payload_limit: ClassVar[int | None] = None
    # The preview shows it as a mail: subject line, the HTML part in a sandboxed frame, the plain-text part.
    previews_as_mail: ClassVar[bool] = False

    def __init__(self, app_config: dict):
        self.config = app_config

    # send_async() runs on the process's HTTP loop (app/channels/http.py); send() then waits for it.
    asynchronous: ClassVar[bool] = False

    def send(self, message: Message) -> Result:
        raise NotImplementedError

    async def send_async(self, message: Message) -> Result:
        """The send as a coroutine on the HTTP loop; only adapters with ``asynchronous = True`` implement it."""
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


def channel_class(name: str) -> type[Channel] | None:
    """The adapter class registered for a channel (its class attributes, without building an instance)."""
    return _REGISTRY.get(name)


def close_all() -> None:
    for adapter in _INSTANCES.values():
        adapter.close()
    _INSTANCES.clear()


# -- What the rest of Herald asks the registry. Every answer follows the registered adapter classes.


def channel_classes() -> tuple[type[Channel], ...]:
    return tuple(sorted(_REGISTRY.values(), key=lambda cls: cls.order))


def channel_names() -> tuple[str, ...]:
    """Every channel, in list order: the API's enum, console choices, analytics rows."""
    return tuple(cls.name for cls in channel_classes())


def labels() -> dict[str, str]:
    return {cls.name: cls.label for cls in channel_classes()}


def label_for(name: str) -> str:
    """The channel's label; a name no adapter answers to any more (old rows) reads as itself."""
    cls = _REGISTRY.get(name)
    return cls.label if cls else name


def in_send_order(names: Iterable[str]) -> list[str]:
    """The known channels among ``names``, in the order a notification's channels are sent."""
    wanted = set(names)
    return [cls.name for cls in sorted(_REGISTRY.values(), key=lambda cls: cls.send_order) if cls.name in wanted]


def inbox_channel() -> str:
    """The name of the channel whose content is the inbox entry."""
    return next(cls.name for cls in _REGISTRY.values() if cls.is_inbox)


def send_rank(name: str) -> int:
    """Where a channel comes in a notification's send order; a channel with no adapter comes last."""
    cls = _REGISTRY.get(name)
    return cls.send_order if cls else len(_REGISTRY)


def in_list_order(names: Iterable[str]) -> list[str]:
    wanted = set(names)
    return [name for name in channel_names() if name in wanted]


def preference_channels() -> tuple[str, ...]:
    """The inbox preference grid's columns, left to right."""
    shown = [cls for cls in _REGISTRY.values() if cls.preference_column is not None]
    return tuple(cls.name for cls in sorted(shown, key=lambda cls: cls.preference_column))


def address_fields() -> dict[str, str]:
    """channel -> the recipient column holding its address, for channels sent to an address."""
    return {cls.name: cls.address_field for cls in channel_classes() if cls.address_field}


def device_platforms() -> dict[str, frozenset[str]]:
    """channel -> the device platforms it sends to, for channels sent to devices."""
    return {cls.name: cls.platforms for cls in channel_classes() if cls.platforms}


def is_external(name: str) -> bool:
    return _REGISTRY[name].external


def external_channels() -> frozenset[str]:
    return frozenset(cls.name for cls in _REGISTRY.values() if cls.external)


def interrupting_channels() -> frozenset[str]:
    return frozenset(cls.name for cls in _REGISTRY.values() if cls.interrupts)


def offers_one_click_unsubscribe(name: str) -> bool:
    cls = _REGISTRY.get(name)
    return bool(cls and cls.one_click_unsubscribe)


def needs_marketing_opt_in(name: str) -> bool:
    cls = _REGISTRY.get(name)
    return bool(cls and cls.marketing_needs_opt_in)


def reachable(addresses: Mapping[str, Any], platforms: Iterable[str]) -> frozenset[str]:
    """Channels a recipient can be reached on at all, from their address columns and active devices' platforms.

    A channel with neither an address field nor platforms (in-app) reaches everyone.
    """
    platforms = set(platforms)
    found = set()
    for cls in _REGISTRY.values():
        if cls.address_field:
            if addresses.get(cls.address_field):
                found.add(cls.name)
        elif cls.platforms:
            if cls.platforms & platforms:
                found.add(cls.name)
        else:
            found.add(cls.name)
    return frozenset(found)


def canonical_address(name: str, address: str) -> str:
    """The one spelling suppression lists match by plain equality (email addresses compare case-insensitively)."""
    cls = _REGISTRY.get(name)
    return address.strip() if cls is None or cls.address_case_sensitive else address.strip().lower()


def content_fields() -> dict[str, tuple[str, ...]]:
    """channel -> the fields its template variant provides."""
    return {cls.name: cls.content_fields for cls in channel_classes()}


def optional_fields() -> frozenset[tuple[str, str]]:
    """(channel, field) pairs a variant may leave out."""
    return frozenset((cls.name, f) for cls in channel_classes() for f in cls.optional_fields)


def field_limits() -> dict[tuple[str, str], int]:
    """(channel, field) -> the longest rendered text the channel accepts."""
    return {(cls.name, f): limit for cls in channel_classes() for f, limit in cls.field_limits.items()}


def variant_sources(name: str) -> tuple[str, ...]:
    """Whose template variant renders this channel, best first: its own, then its fallback's."""
    cls = _REGISTRY.get(name)
    return (name, cls.template_fallback) if cls and cls.template_fallback else (name,)


def variant_channels() -> tuple[str, ...]:
    """Channels that have template variants of their own (the editor's sections), in list order."""
    return tuple(cls.name for cls in channel_classes() if not cls.template_fallback)


def template_label(name: str) -> str:
    """The label of a template variant: its channel's, joined with those of channels that fall back to it."""
    users = [cls.label for cls in channel_classes() if cls.template_fallback == name]
    return " & ".join([label_for(name), *users])
