"""What the HTTP-based adapters share: one event loop per worker process driving libcurl, and status classification.

Why pycurl: measured here (one process, the same loopback provider, the same concurrency), httpx in a thread
pool carries ~1,200-1,900 requests/s, aiohttp ~1,400-9,700 and libcurl's multi interface ~6,000-41,000 (the
low figures with the machine shared). A campaign's external channel is bounded by the client's CPU per
request, so Herald drives libcurl: :class:`FastClient` puts its requests on the process's one asyncio loop
(a daemon thread, made on first use and again after a fork), where one ``CurlMulti`` -- one connection cache
-- is driven by socket events through pycurl's public ``socket_action`` interface (tornado's curl client
does the same). Each client keeps at most ``limit`` requests in flight: the channel's concurrency.

An adapter writes its send as a coroutine (``send_async``); code outside the loop calls
:func:`run_sync`, which waits for a coroutine on the loop with the caller's context (Flask's app context).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import logging
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from io import BytesIO
from typing import Any
from urllib.parse import urlencode

import httpx
import pycurl

from app.channels.base import Outcome, Result
from app.models.types import utcnow

# httpx logs every request at INFO (the email API adapters still speak through it).
logging.getLogger("httpx").setLevel(logging.WARNING)


class HttpError(Exception):
    """The request got no HTTP answer: refused, reset, timed out, name not resolved."""


@dataclass
class HttpResponse:
    status_code: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names; a repeated header keeps the last

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _CurlLoop:
    """One asyncio loop in a daemon thread and the ``CurlMulti`` it drives."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self.futures: dict[pycurl.Curl, asyncio.Future] = {}
        self.spare: list[pycurl.Curl] = []
        self._timer: asyncio.TimerHandle | None = None
        self._watched: dict[int, int] = {}
        threading.Thread(target=self.loop.run_forever, name="herald-http", daemon=True).start()

    def _on_socket(self, event: int, fd: int, _multi, _data) -> None:
        if self._watched.get(fd) == event:
            return
        if self._watched.pop(fd, None) is not None:
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)
        if event == pycurl.POLL_REMOVE:
            return
        if event in (pycurl.POLL_IN, pycurl.POLL_INOUT):
            self.loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        if event in (pycurl.POLL_OUT, pycurl.POLL_INOUT):
            self.loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
        self._watched[fd] = event

    def _on_timer(self, msecs: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if msecs >= 0:
            self._timer = self.loop.call_later(msecs / 1000.0, self._act, pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, action: int) -> None:
        if fd == pycurl.SOCKET_TIMEOUT:
            self._timer = None
        while True:
            try:
                code, _running = self.multi.socket_action(fd, action)
            except pycurl.error:
                break
            if code != pycurl.E_CALL_MULTI_PERFORM:
                break
        self._finish()

    def _finish(self) -> None:
        while True:
            queued, done, failed = self.multi.info_read()
            for curl in done:
                self._settle(curl, None)
            for curl, _errno, message in failed:
                self._settle(curl, message)
            if not queued:
                return

    def _settle(self, curl: pycurl.Curl, error: str | None) -> None:
        self.multi.remove_handle(curl)
        future = self.futures.pop(curl)
        if not future.done():
            if error is None:
                future.set_result(curl.getinfo(pycurl.RESPONSE_CODE))
            else:
                future.set_exception(HttpError(error))
        self.spare.append(curl)

    async def perform(self, configure) -> int:
        """Run one transfer on a pooled easy handle; ``configure(curl)`` sets its options. Returns the status."""
        curl = self.spare.pop() if self.spare else pycurl.Curl()
        curl.reset()  # options only: live connections stay in the multi handle's cache
        configure(curl)
        future = self.loop.create_future()
        self.futures[curl] = future
        self.multi.add_handle(curl)  # libcurl asks for a 0 ms timer: the transfer starts on the next loop pass
        return await future


_LOOP: tuple[int, _CurlLoop] | None = None
_LOOP_LOCK = threading.Lock()


def curl_loop() -> _CurlLoop:
    """This process's loop (a new one after a fork: a loop thread does not survive it)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP[0] != os.getpid():
            _LOOP = (os.getpid(), _CurlLoop())
        return _LOOP[1]


def event_loop() -> asyncio.AbstractEventLoop:
    return curl_loop().loop


def submit(coroutine: Coroutine, context: contextvars.Context | None = None) -> concurrent.futures.Future:
    """Start ``coroutine`` on the loop in a copy of ``context`` (default: the caller's); a future of its answer."""
    loop = event_loop()
    context = (context or contextvars.copy_context()).copy()
    outer: concurrent.futures.Future = concurrent.futures.Future()

    def start() -> None:
        task = loop.create_task(coroutine, context=context)
        task.add_done_callback(lambda done: _copy_outcome(done, outer))

    loop.call_soon_threadsafe(start)
    return outer


def _copy_outcome(task: asyncio.Task, outer: concurrent.futures.Future) -> None:
    if task.cancelled():
        outer.cancel()
    elif task.exception() is not None:
        outer.set_exception(task.exception())
    else:
        outer.set_result(task.result())


def run_sync(coroutine: Coroutine):
    """Wait for ``coroutine`` on the loop from any other thread (never from the loop's own)."""
    loop = event_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coroutine.close()
        raise RuntimeError("run_sync called on the HTTP loop itself: await the coroutine instead")
    return submit(coroutine).result()


def pooled_client(config: dict, http2: bool = False, prior_knowledge: bool = False, **options) -> httpx.Client:
    """A keep-alive httpx client (APNs: its HTTP/2 connection), short connect timeout so a dead provider fails fast.

    ``prior_knowledge`` speaks HTTP/2 without TLS (h2c); only loopback test peers need it.
    """
    timeout = httpx.Timeout(config.get("PROVIDER_TIMEOUT", 10.0), connect=config.get("PROVIDER_CONNECT_TIMEOUT", 3.0))
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60)
    return httpx.Client(http2=http2, http1=not prior_knowledge, timeout=timeout, limits=limits, **options)


class FastClient:
    """Requests through the process's curl loop, at most ``limit`` in flight, with short timeouts."""

    def __init__(
        self, config: dict, limit: int = 16, http2: bool = False, prior_knowledge: bool = False, reuse: bool = True
    ):
        self.timeout_ms = int(config.get("PROVIDER_TIMEOUT", 10.0) * 1000)
        self.connect_timeout_ms = int(config.get("PROVIDER_CONNECT_TIMEOUT", 3.0) * 1000)
        self.limit = max(1, limit)
        self.version = (
            pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
            if prior_knowledge
            else (pycurl.CURL_HTTP_VERSION_2TLS if http2 else pycurl.CURL_HTTP_VERSION_1_1)
        )
        self.reuse = reuse  # False: a new connection per request (a benchmark's worst case)
        self._slots: dict[int, asyncio.Semaphore] = {}

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if id(loop) not in self._slots:
            self._slots[id(loop)] = asyncio.Semaphore(self.limit)
        return self._slots[id(loop)]

    async def post(
        self,
        url: str,
        *,
        content: bytes | None = None,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> HttpResponse:
        """POST and read the whole answer; raises :class:`HttpError` when no HTTP answer came."""
        headers = dict(headers or {})
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode()
            headers.setdefault("content-type", "application/json")
        elif form is not None:
            content = urlencode(form).encode()
            headers.setdefault("content-type", "application/x-www-form-urlencoded")
        body, answer_headers = BytesIO(), {}
        configure = self._configure(url, content or b"", headers, auth, body, answer_headers)
        async with self._slot():
            status = await curl_loop().perform(configure)
        return HttpResponse(status, body.getvalue(), answer_headers)

    def _configure(self, url, content, headers, auth, body, answer_headers):
        def on_header(line: bytes) -> None:
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if sep:
                answer_headers[name.strip().lower()] = value.strip()

        def configure(curl: pycurl.Curl) -> None:
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)  # never file://, gopher://...
            curl.setopt(pycurl.FOLLOWLOCATION, 0)
            curl.setopt(pycurl.NOSIGNAL, 1)
            curl.setopt(pycurl.HTTP_VERSION, self.version)
            curl.setopt(pycurl.TIMEOUT_MS, self.timeout_ms)
            curl.setopt(pycurl.CONNECTTIMEOUT_MS, self.connect_timeout_ms)
            curl.setopt(pycurl.POSTFIELDS, content)
            curl.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()] + ["Expect:"])
            curl.setopt(pycurl.WRITEFUNCTION, body.write)
            curl.setopt(pycurl.HEADERFUNCTION, on_header)
            if not self.reuse:
                curl.setopt(pycurl.FRESH_CONNECT, 1)
                curl.setopt(pycurl.FORBID_REUSE, 1)
            if auth:
                curl.setopt(pycurl.HTTPAUTH, pycurl.HTTPAUTH_BASIC)
                curl.setopt(pycurl.USERPWD, f"{auth[0]}:{auth[1]}")

        return configure

    def close(self) -> None:
        """Connections belong to the process's loop and are reused by every client; nothing to release here."""


def retry_after(response: HttpResponse) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def transport_failure(provider: str, error: Exception) -> Result:
    """Timeouts and refused connections: the provider's fault, retry and count against its circuit."""
    return Result(
        Outcome.TRANSIENT,
        provider,
        error_code="connection_error",
        detail=f"{type(error).__name__}: {error}"[:500],
        provider_fault=True,
    )


def throttled_or_down(provider: str, response: HttpResponse, code: str | None = None) -> Result | None:
    """The Result for a 429 or a 5xx, or None for any other status."""
    if response.status_code == 429:
        return Result(
            Outcome.TRANSIENT,
            provider,
            error_code=code or "http_429",
            detail=response.text[:500],
            retry_after=retry_after(response),
        )
    if response.status_code >= 500:
        return Result(
            Outcome.TRANSIENT,
            provider,
            error_code=code or f"http_{response.status_code}",
            detail=response.text[:500],
            retry_after=retry_after(response),
            provider_fault=True,
        )
    return None
