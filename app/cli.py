"""``flask`` commands. Each domain keeps its commands next to its code; this registers them.

The ``worker`` and ``scheduler`` commands are ``jobs/``'s and are registered by ``wsgi.py``: app/ never imports jobs/.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from app.api.commands import create_api_key
    from app.channels.vapid import vapid_keys_command
    from app.console.commands import create_staff
    from app.demo import seed_demo
    from app.inbox.commands import inbox_link, user_token_command
    from app.launcher import up
    from app.web import web_command

    for command in (
        create_api_key,
        create_staff,
        seed_demo,
        inbox_link,
        user_token_command,
        up,
        vapid_keys_command,
        web_command,
    ):
        app.cli.add_command(command)
