"""The ``flask worker`` and ``flask scheduler`` commands, registered on the app by ``wsgi.py`` (app/ never imports jobs/)."""

from __future__ import annotations

from flask import Flask

from jobs.scheduler import scheduler_command
from jobs.worker import worker_command


def init_app(app: Flask) -> None:
    app.cli.add_command(worker_command)
    app.cli.add_command(scheduler_command)
