"""``flask inbox-link USER_ID`` and ``flask user-token USER_ID``: what a host product would give that user."""

import time

import click
from flask import current_app
from flask.cli import with_appcontext

from app.inbox.auth import inbox_url
from app.inbox.tokens import SCOPES, TokenRefused, granted_scopes, sign_user_token


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


@click.command("user-token")
@click.argument("user_id")
@click.option(
    "--minutes", type=click.IntRange(1, 24 * 60), default=15, show_default=True, help="Lifetime of the token."
)
@click.option("--scope", default=None, help=f"Space-separated, from: {', '.join(SCOPES)} (default: all of them).")
@with_appcontext
def user_token_command(user_id: str, minutes: int, scope: str | None) -> None:
    """Print a user token (JWT HS256, signed with HERALD_USER_TOKEN_SECRET) for USER_ID, as a host product makes one."""
    if scope is not None:
        try:
            granted_scopes(scope)
        except TokenRefused as error:
            raise click.BadParameter(str(error), param_hint="--scope") from None
    now = int(time.time())
    click.echo(
        sign_user_token(current_app.config["USER_TOKEN_SECRET"], user_id, now + minutes * 60, scope, issued_at=now)
    )
