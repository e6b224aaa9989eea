"""A slow network link on loopback: a TCP proxy in front of a real server (Redis, SMTP, an HTTP provider...) that
holds every reply for ``delay`` seconds before passing it on, as a congested or distant link would.

A process pointed at the link spends at least ``delay`` in each round trip to that server, so a test can make
the time a process spends mid-run as wide as it needs (e.g. for a SIGKILL to land there) without any hook in
the code under test.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit


class SlowLink:
    def __init__(self, upstream_host: str, upstream_port: int, delay: float):
        self.upstream, self.delay = (upstream_host, upstream_port), delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.replies = 0  # chunks passed back from the server
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    @classmethod
    def in_front_of(cls, url: str, delay: float) -> SlowLink:
        """A link to the server of ``url`` (``redis://host:port/db``, ``smtp://host:port``...)."""
        parts = urlsplit(url)
        return cls(parts.hostname, parts.port, delay)

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by this link's."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@" if credentials else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.port}"))

    def start(self) -> SlowLink:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.delay), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, delay: float) -> None:
        try:
            while chunk := source.recv(65536):
                if delay:
                    time.sleep(delay)
                    with self._lock:
                        self.replies += 1
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
