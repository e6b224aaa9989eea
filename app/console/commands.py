"""Staff account administration from the command line."""
import click
from flask.cli import with_appcontext


@click.command("create-staff")
@click.argument("email")
@with_appcontext
def create_staff(email: str) -> None:
    """Create a staff account."""
    raise click.ClickException("not implemented yet")
