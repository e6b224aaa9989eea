"""The accept path's floor, for tests/bench/test_bench_accept.py: the least a Flask app can do per accepted send.

Parse the JSON body, insert one notification row, commit, enqueue its RQ routing job, answer 202 with the id.
No authentication, rate limit, validation, idempotency key or outbox: what Herald does beyond this is what the
benchmark's ratio prices. Served like Herald (``gunicorn -c app/gunicorn_config.py tests.bench.floor_app:app``)
with DATABASE_URL, REDIS_URL and FLOOR_RECIPIENT_ID set; its connection pool is as large as Herald's.
"""

import os
import uuid
from datetime import UTC, datetime

from flask import Flask, jsonify, request
from redis import Redis
from rq import Queue
from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, insert
from sqlalchemy.dialects.postgresql import JSONB

engine = create_engine(
    os.environ["DATABASE_URL"], pool_size=int(os.environ.get("FLOOR_POOL_SIZE", "20")), max_overflow=20
)
queue = Queue("normal", connection=Redis.from_url(os.environ["REDIS_URL"]))
recipient_id = int(os.environ["FLOOR_RECIPIENT_ID"])
json_type = JSON().with_variant(JSONB(), "postgresql")
notifications = Table(
    "notifications",
    MetaData(),
    Column("id", String(32), primary_key=True),
    Column("recipient_id", Integer),
    Column("type", String(16)),
    Column("category", String(64)),
    Column("priority", String(16)),
    Column("title", Text),
    Column("body", Text),
    Column("data", json_type),
    Column("channels", json_type),
    Column("status", String(16)),
    Column("created_at", DateTime(timezone=True)),
)
app = Flask(__name__)


@app.post("/v1/notifications")
def accept():
    body = request.get_json()
    notification_id = uuid.uuid4().hex
    with engine.begin() as connection:
        connection.execute(
            insert(notifications),
            {
                "id": notification_id,
                "recipient_id": recipient_id,
                "type": body["type"],
                "category": body.get("category", "general"),
                "priority": "high",
                "title": body["title"],
                "body": body["body"],
                "data": body.get("data", {}),
                "channels": body["channels"],
                "status": "accepted",
                "created_at": datetime.now(UTC),
            },
        )
    queue.enqueue("jobs.delivery.route_notification", notification_id)
    return jsonify({"id": notification_id, "status": "accepted"}), 202
