"""API key administration from the command line."""

import click
from flask.cli import with_appcontext

from app.api.keys import create_api_key as make_key
from app.api.scopes import ALL_SCOPES, DEFAULT_SCOPES, UnknownScope, parse_scopes
from app.settings_values import check_rate_limit


@click.command("create-api-key")
@click.argument("name")
@click.option("--rate-limit", default=None, help="Per-key limit, e.g. 100/second (default: HERALD_API_RATE_LIMIT).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="SCOPE",
    help=f"Repeat for each scope (or separate with commas): {', '.join(ALL_SCOPES)}, or 'all'. "
    f"Default: every scope but users:erase, which is granted only by name because erasure is irreversible.",
)
@with_appcontext
def create_api_key(name: str, rate_limit: str | None, scopes: tuple[str, ...]) -> None:
    """Create an API key called NAME and print it (it is shown only this once)."""
    try:
        rate_limit = check_rate_limit(rate_limit) if rate_limit is not None else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--rate-limit") from None
    try:
        granted = _scopes_from_options(scopes)
    except UnknownScope as error:
        raise click.BadParameter(str(error), param_hint="--scope") from None
    api_key, plaintext = make_key(name.strip(), rate_limit, granted)
    click.echo(
        f"API key {api_key.name!r} (id {api_key.id}, scopes: {api_key.scopes}); "
        "store it now, it will not be shown again:"
    )
    click.echo(plaintext)


def _scopes_from_options(options: tuple[str, ...]) -> tuple[str, ...]:
    if not options:
        return DEFAULT_SCOPES
    if "all" in options:
        return ALL_SCOPES
    return parse_scopes(" ".join(options))
