#!/usr/bin/env bash
# The accept path under wrk (a C load generator, so Python's own client does not eat the cores it measures):
# gunicorn with 2 gevent workers, 32 connections, 20 s, every request a new notification.
#   tests/bench/wrk_accept.sh                                   # SQLite in a temporary folder
#   tests/bench/wrk_accept.sh postgresql://postgres@127.0.0.1:5432/wrkbench   # an existing, empty database
# Needs wrk (apt-get install wrk) and Redis on 127.0.0.1:6379 (db 13 is flushed).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
export INSTANCE_PATH="$work/instance" REDIS_URL=redis://127.0.0.1:6379/13 SECRET_KEY=wrk-bench-secret-key-0123456789
export DATABASE_URL="${1:-sqlite:///$work/herald.db}"
redis-cli -n 13 flushdb >/dev/null
key=$(.venv/bin/python - <<'PY' 2>/dev/null | tail -1
from flask_migrate import upgrade
from app import create_app
from app.api.keys import create_api_key
from tests.factories import make_recipient
with create_app().app_context():
    upgrade(revision="heads")
    make_recipient(external_id="bench-user")
    print(create_api_key("wrk", rate_limit="1000000000/minute")[1])
PY
)
port=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
.venv/bin/python -m gunicorn -k gevent -w 2 --worker-connections 2000 -b "127.0.0.1:$port" --log-level warning wsgi:app &
server=$!
sleep 3
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"user_id": "bench-user", "type": "transactional", "title": "Receipt", "body": "Order 1", "channels": ["in_app", "email"]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
LUA
wrk -t2 -c32 -d5s -s "$work/post.lua" "http://127.0.0.1:$port/v1/notifications" >/dev/null  # warm up
wrk -t2 -c32 -d20s --latency -s "$work/post.lua" "http://127.0.0.1:$port/v1/notifications"
