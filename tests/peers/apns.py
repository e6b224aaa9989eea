"""An APNs provider API on loopback, speaking HTTP/2 without TLS (h2c, prior knowledge), built on ``h2``.

It checks what Apple checks: ``POST /3/device/<token>``, a provider JWT
(ES256) that verifies with the team's public key and names the right team
(``iss``) and key (``kid``), the apns-* headers, a body of at most 4 KB;
and it answers in Apple's shapes: 200 with ``apns-id``, or a JSON
``{"reason": ...}`` (410 adds ``timestamp``).
"""

from __future__ import annotations

import json
import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import jwt


class ApnsServer:
    def __init__(self, public_key, team_id: str, key_id: str, topic: str):
        self.public_key, self.team_id, self.key_id, self.topic = public_key, team_id, key_id, topic
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests: list[dict] = []
        self.tokens_seen: set[str] = set()
        self.connections = 0
        self.unregistered: set[str] = set()  # device tokens that answer 410 Unregistered
        self.bad_tokens: set[str] = set()  # device tokens that answer 400 BadDeviceToken
        self.fail_next: list[tuple[int, str, dict]] = []  # (status, reason, extra headers)
        self.lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApnsServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self.sock.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        streams: dict[int, dict] = {}
        with conn:
            while True:
                try:
                    data = conn.recv(65535)
                except OSError:
                    return
                if not data:
                    return
                for event in h2conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = {"headers": dict(event.headers), "body": b""}
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id]["body"] += event.data
                        h2conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        request = streams.pop(event.stream_id)
                        status, headers, body = self.respond(request["headers"], request["body"])
                        h2conn.send_headers(
                            event.stream_id,
                            [(":status", str(status)), *headers.items(), ("content-length", str(len(body)))],
                        )
                        h2conn.send_data(event.stream_id, body, end_stream=True)
                conn.sendall(h2conn.data_to_send())

    def respond(self, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        apns_id = headers.get("apns-id", "00000000-0000-0000-0000-000000000000")

        def error(status: int, reason: str, **extra) -> tuple[int, dict, bytes]:
            return status, {"apns-id": apns_id}, json.dumps({"reason": reason, **extra}).encode()

        if headers.get(":method") != "POST" or not headers.get(":path", "").startswith("/3/device/"):
            return error(404, "BadPath")
        token = headers[":path"][len("/3/device/") :]
        authorization = headers.get("authorization", "")
        if not authorization.startswith("bearer "):
            return error(403, "MissingProviderToken")
        provider_token = authorization[len("bearer ") :]
        try:
            claims = jwt.decode(
                provider_token, self.public_key, algorithms=["ES256"], options={"require": ["iss", "iat"]}
            )
            kid = jwt.get_unverified_header(provider_token).get("kid")
        except jwt.PyJWTError:
            return error(403, "InvalidProviderToken")
        if claims["iss"] != self.team_id or kid != self.key_id:
            return error(403, "InvalidProviderToken")
        if time.time() - claims["iat"] > 3600:
            return error(403, "ExpiredProviderToken")
        if headers.get("apns-topic") != self.topic:
            return error(400, "TopicDisallowed")
        if headers.get("apns-push-type") not in ("alert", "background"):
            return error(400, "InvalidPushType")
        if headers.get("apns-priority") not in ("5", "10"):
            return error(400, "BadPriority")
        if len(body) > 4096:
            return error(413, "PayloadTooLarge")
        with self.lock:
            self.tokens_seen.add(provider_token)
            if self.fail_next:
                status, reason, extra = self.fail_next.pop(0)
                return status, {"apns-id": apns_id, **extra}, json.dumps({"reason": reason}).encode()
        if token in self.bad_tokens:
            return error(400, "BadDeviceToken")
        if token in self.unregistered:
            return error(410, "Unregistered", timestamp=int(time.time() * 1000))
        with self.lock:
            self.requests.append({"token": token, "headers": headers, "payload": json.loads(body), "claims": claims})
        return 200, {"apns-id": apns_id}, b""
