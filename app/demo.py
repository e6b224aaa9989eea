"""Demo data for `make run`."""
import click
from flask.cli import with_appcontext


@click.command("seed-demo")
@with_appcontext
def seed_demo() -> None:
    """Load demo data once."""
    raise click.ClickException("not implemented yet")
