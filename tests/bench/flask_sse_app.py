"""Plain Flask-SSE, for comparison in tests/bench/test_bench_sse.py: one Redis subscription per open stream.

Run as ``gunicorn -k gevent tests.bench.flask_sse_app:app`` with REDIS_URL set.
"""

import os

from flask import Flask
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
app.register_blueprint(sse, url_prefix="/stream")
