"""`flask up`: everything in one terminal."""
import click


@click.command("up")
def up() -> None:
    """Run web, workers, schedulers and (if needed) an embedded Redis together."""
    raise click.ClickException("not implemented yet")
