"""``flask web``: the web role -- gunicorn with gevent workers serving ``wsgi:app``.

It replaces itself with gunicorn (``exec``), so a supervisor's SIGTERM reaches
gunicorn's master directly: no new connections, open requests finish, SSE
streams end with a final ``retry:`` (``app/gunicorn_config.py``).
"""

from __future__ import annotations

import os
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from app.config import PROJECT_ROOT

GUNICORN_CONFIG = PROJECT_ROOT / "app" / "gunicorn_config.py"


def gunicorn_argv(host: str, port: int, workers: int, graceful_timeout: int | None = None) -> list[str]:
    """The command line that serves Herald; settings not given here come from ``app/gunicorn_config.py``."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), "-b", bind, "-w", str(workers)]
    if graceful_timeout is not None:
        argv += ["--graceful-timeout", str(graceful_timeout)]
    return argv + ["wsgi:app"]


@click.command("web")
@click.option("--host", default=None, help="Address to listen on (default: HERALD_HOST, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: HERALD_PORT, else 5000).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="gunicorn gevent worker processes (default: HERALD_WEB_WORKERS, else 2).",
)
@click.option(
    "--graceful-timeout",
    type=click.IntRange(0, 3600),
    default=None,
    help="Seconds open requests get after SIGTERM (default 25).",
)
@with_appcontext
def web_command(host: str | None, port: int | None, workers: int | None, graceful_timeout: int | None) -> None:
    """Serve the API, console and inbox with gunicorn + gevent until SIGTERM.

    Other gunicorn settings can be given in GUNICORN_CMD_ARGS (gunicorn reads it itself).
    """
    config = current_app.config
    argv = gunicorn_argv(
        host or config["HOST"], port or config["PORT"], workers or config["WEB_WORKERS"], graceful_timeout
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(PROJECT_ROOT)  # gunicorn imports wsgi:app from the working directory
    os.execv(sys.executable, argv)
