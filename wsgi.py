"""WSGI entry point: ``gunicorn -k gevent wsgi:app``; also FLASK_APP for the CLI."""
import sys

from app import create_app
from app.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    print(f"herald: configuration error: {error}", file=sys.stderr)
    sys.exit(2)
