"""API key administration from the command line."""
import click
from flask.cli import with_appcontext


@click.command("create-api-key")
@click.argument("name")
@with_appcontext
def create_api_key(name: str) -> None:
    """Create an API key called NAME and print it (it is shown only this once)."""
    raise click.ClickException("not implemented yet")
