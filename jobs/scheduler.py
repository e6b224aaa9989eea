"""`flask scheduler`: APScheduler process for periodic work."""
import click


@click.command("scheduler")
def scheduler_command() -> None:
    """Run the periodic jobs."""
    raise click.ClickException("not implemented yet")
