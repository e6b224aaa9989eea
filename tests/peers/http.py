"""A threaded HTTP/1.1 (keep-alive) server on loopback for fake providers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    peer = None  # set per server class

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers, payload = self.peer.handle("POST", self.path, self.headers, body)
        self.answer(status, headers, payload)

    def do_GET(self) -> None:
        status, headers, payload = self.peer.handle("GET", self.path, self.headers, b"")
        self.answer(status, headers, payload)

    def answer(self, status: int, headers: dict, payload) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        if payload is not None and not isinstance(payload, bytes):
            self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class HttpPeer:
    """Subclasses implement ``handle(method, path, headers, body) -> (status, headers, payload)``."""

    def __init__(self, port: int = 0):
        handler = type("BoundHandler", (Handler,), {"peer": self})
        server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 256})
        self.server = server_class(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.lock = threading.Lock()
        self.connections = 0
        original = self.server.process_request

        def counting(request, address):
            with self.lock:
                self.connections += 1
            original(request, address)

        self.server.process_request = counting

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method, path, headers, body):
        raise NotImplementedError
