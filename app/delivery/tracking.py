"""Click tracking: links in a notification go through Herald once, so "clicked" can be counted.

A tracked link is ``{BASE_URL}/c/<token>``; the token is signed (not
encrypted) and carries the notification id, the channel and the original
URL, so the redirect can only ever lead where Herald itself pointed: no open
redirect, and no table of links to keep. What is rewritten, for channels whose
adapter sets ``Channel.tracks_links`` (email, mobile push, web push):

- absolute http(s) links in an email's ``html`` (``<a href>``) and ``text`` parts;
- ``data.url`` / ``data.deep_link``, which push payloads open on a tap.

Herald's own links (unsubscribe, the click path itself) and relative or
non-web links are left alone. SMS is never rewritten (it would change the
segment count); in-app clicks are counted by the inbox's Open action.
``HERALD_TRACK_CLICKS=false`` sends every link as written.
No request, database or clock here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import urlparse

from itsdangerous import BadSignature

from app.channels.base import Message, channel_class
from app.delivery.signed import serializer

SALT = "herald-click"
CLICK_PATH = "/c/"
LINK_FIELDS = ("url", "deep_link")
# A tracked link is ~1.4x its URL plus ~100 characters, and push payloads carry it twice: longer links stay as
# written, so tracking can never push a notification over a provider's 4 KB payload limit.
MAX_TRACKED_URL = 1024
# Links a reader follows (<a>, <area>); a stylesheet's <link href> is fetched on open and is not a click.
_HREF = re.compile(r"""(<(?:a|area)\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_TEXT_URL = re.compile(r"""https?://[^\s<>"']+""", re.IGNORECASE)
# Sentence punctuation right after a URL in plain text belongs to the sentence, not the link.
_TRAILING = ".,;:!?)]}'\""


@dataclass(frozen=True)
class Click:
    notification_id: str
    channel: str
    url: str


def click_token(secret: str, notification_id: str, channel: str, url: str) -> str:
    return serializer(secret, SALT).dumps([notification_id, channel, url])


def read_click_token(secret: str, token: str) -> Click | None:
    """The click a token we signed stands for, or None for anything else (tampered, foreign, not a web URL)."""
    try:
        payload = serializer(secret, SALT).loads(token)
    except BadSignature:
        return None
    if not (isinstance(payload, list) and len(payload) == 3 and all(isinstance(part, str) for part in payload)):
        return None
    notification_id, channel, url = payload
    return Click(notification_id, channel, url) if is_web_url(url) else None


def is_web_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


@lru_cache(maxsize=4096)  # a campaign's recipients share their links: parsed once per worker, not per recipient
def trackable(url: str, base_url: str) -> bool:
    """An absolute http(s) link, not too long to track, that is not one of Herald's own (unsubscribe, tracked links)."""
    if len(url) > MAX_TRACKED_URL or not is_web_url(url):
        return False
    own = urlparse(base_url)
    parsed = urlparse(url)
    return not (parsed.netloc == own.netloc and parsed.path.startswith(("/unsubscribe/", CLICK_PATH)))


def rewrite_html(markup: str, link: Callable[[str], str]) -> str:
    """Every ``href`` through ``link``; the attribute's HTML escaping is undone before and redone after."""

    def swap(match: re.Match) -> str:
        prefix, quote, value = match.groups()
        return f"{prefix}{quote}{html.escape(link(html.unescape(value)), quote=True)}{quote}"

    return _HREF.sub(swap, markup)


def rewrite_text(text: str, link: Callable[[str], str]) -> str:
    def swap(match: re.Match) -> str:
        url = match.group(0)
        kept = url.rstrip(_TRAILING)
        return link(kept) + url[len(kept) :]

    return _TEXT_URL.sub(swap, text)


def tracked_message(message: Message, secret: str, base_url: str) -> Message:
    """``message`` with its links sent through ``{base_url}/c/<token>``."""
    base_url = base_url.rstrip("/")

    def link(url: str) -> str:
        if not trackable(url, base_url):
            return url
        return f"{base_url}{CLICK_PATH}{click_token(secret, message.notification_id, message.channel, url)}"

    content = dict(message.content)
    if "html" in content:
        content["html"] = rewrite_html(content["html"], link)
    if "text" in content:
        content["text"] = rewrite_text(content["text"], link)
    data = dict(message.data)
    for name in LINK_FIELDS:
        if isinstance(data.get(name), str):
            data[name] = link(data[name])
    return replace(message, content=content, data=data)


def track(message: Message, config: dict) -> Message:
    """The message as it should go out: links tracked when the setting and the channel's adapter allow it."""
    adapter = channel_class(message.channel)
    if not config.get("TRACK_CLICKS") or adapter is None or not adapter.tracks_links:
        return message
    return tracked_message(message, config["SECRET_KEY"], config["BASE_URL"])
