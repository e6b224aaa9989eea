"""API key administration from the command line."""
import click
from flask.cli import with_appcontext

from app.api.keys import create_api_key as make_key
from app.config import check_rate_limit


@click.command("create-api-key")
@click.argument("name")
@click.option("--rate-limit", default=None, help="Per-key limit, e.g. 100/second (default: HERALD_API_RATE_LIMIT).")
@with_appcontext
def create_api_key(name: str, rate_limit: str | None) -> None:
    """Create an API key called NAME and print it (it is shown only this once)."""
    try:
        rate_limit = check_rate_limit(rate_limit) if rate_limit is not None else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--rate-limit") from None
    api_key, plaintext = make_key(name.strip(), rate_limit)
    click.echo(f"API key {api_key.name!r} (id {api_key.id}); store it now, it will not be shown again:")
    click.echo(plaintext)
