"""WSGI entry point: ``gunicorn -k gevent wsgi:app``; also FLASK_APP for the CLI, with jobs/'s worker and scheduler."""

import sys

from app import create_app
from app.config import ConfigError
from jobs import cli as jobs_cli

try:
    app = create_app()
except ConfigError as error:
    print(f"herald: configuration error: {error}", file=sys.stderr)
    sys.exit(2)
jobs_cli.init_app(app)
