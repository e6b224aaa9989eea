"""``flask inbox-link USER_ID``: the signed inbox URL a host product would give that user."""
import click
from flask import current_app
from flask.cli import with_appcontext

from app.inbox.auth import inbox_url


@click.command("inbox-link")
@click.argument("user_id")
@with_appcontext
def inbox_link(user_id: str) -> None:
    """Print USER_ID's signed inbox URL (HERALD_BASE_URL, signed with HERALD_INBOX_SECRET).

    Opening it signs that end user in to the inbox; a user id Herald does not
    know yet becomes a new recipient, as when a host product links to it.
    """
    config = current_app.config
    click.echo(inbox_url(config["BASE_URL"], config["INBOX_SECRET"], user_id))
