"""API key administration from the command line."""
import click
from flask.cli import with_appcontext

from app.api.keys import create_api_key as make_key


@click.command("create-api-key")
@click.argument("name")
@click.option("--rate-limit", default="6000/minute", show_default=True, help="Per-key limit, e.g. 100/second.")
@with_appcontext
def create_api_key(name: str, rate_limit: str) -> None:
    """Create an API key called NAME and print it (it is shown only this once)."""
    from limits import parse

    try:
        parse(rate_limit)
    except ValueError:
        raise click.BadParameter(f"{rate_limit!r} is not a rate like 100/second", param_hint="--rate-limit") from None
    api_key, plaintext = make_key(name.strip(), rate_limit)
    click.echo(f"API key {api_key.name!r} (id {api_key.id}); store it now, it will not be shown again:")
    click.echo(plaintext)
