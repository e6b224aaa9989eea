"""Staff account administration from the command line."""

from __future__ import annotations

import click
from email_validator import EmailNotValidError, validate_email
from flask.cli import with_appcontext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.delivery.constants import ROLES
from app.extensions import db
from app.models import StaffUser

MIN_PASSWORD_LENGTH = 8


def _check_email(_ctx, _param, value: str) -> str:
    # No DNS lookup: the address is a sign-in name, and the host may be offline.
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise click.BadParameter(str(error)) from None


def _check_password(_ctx, _param, value: str) -> str:
    if len(value) < MIN_PASSWORD_LENGTH:
        raise click.BadParameter(f"must be at least {MIN_PASSWORD_LENGTH} characters")
    return value


@click.command("create-staff")
@click.argument("email", callback=_check_email)
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the account may do in the console.")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    callback=_check_password,
    help=f"At least {MIN_PASSWORD_LENGTH} characters; asked for (hidden) when left out.",
)
@with_appcontext
def create_staff(email: str, role: str, password: str) -> None:
    """Create a console account for EMAIL with the given role."""
    taken = db.session.scalar(select(StaffUser.id).where(func.lower(StaffUser.email) == email.lower()))
    if taken is not None:
        raise click.ClickException(f"a staff account for {email} already exists")
    staff = StaffUser(email=email, role=role)
    staff.set_password(password)
    db.session.add(staff)
    try:
        db.session.commit()
    except IntegrityError:
        # Someone created the same account between the check and the insert.
        db.session.rollback()
        raise click.ClickException(f"a staff account for {email} already exists") from None
    click.echo(f"Created {role} account {email} (id {staff.id}).")
