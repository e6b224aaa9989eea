"""`flask create-staff`: accounts from the command line, with clear errors for bad input."""

from __future__ import annotations

from sqlalchemy import select

from app.console.commands import create_staff
from app.extensions import db
from app.models import StaffUser
from tests.factories import make_staff


def staff_by_email(app, email: str) -> StaffUser | None:
    with app.app_context():
        return db.session.scalar(select(StaffUser).where(StaffUser.email == email))


def all_staff(app) -> list[StaffUser]:
    with app.app_context():
        return db.session.scalars(select(StaffUser)).all()


def test_command_is_registered_under_its_name(app):
    assert create_staff.name == "create-staff"
    assert app.cli.get_command(None, "create-staff") is create_staff


def test_creates_an_admin_with_a_hashed_password(app, runner):
    result = runner.invoke(args=["create-staff", "ops@example.com", "--role", "admin", "--password", "s3cret-enough"])
    assert result.exit_code == 0, result.output
    assert "Created admin account ops@example.com" in result.output
    staff = staff_by_email(app, "ops@example.com")
    assert staff.role == "admin" and staff.active
    assert staff.password_hash != "s3cret-enough"
    assert staff.check_password("s3cret-enough")


def test_created_account_can_sign_in(app, runner, client):
    runner.invoke(args=["create-staff", "mk@example.com", "--role", "marketer", "--password", "s3cret-enough"])
    response = client.post("/console/login", data={"email": "mk@example.com", "password": "s3cret-enough"})
    assert response.status_code == 302


def test_prompts_for_hidden_password_with_confirmation_when_not_given(app, runner):
    result = runner.invoke(
        args=["create-staff", "mk@example.com", "--role", "marketer"], input="long-password\nlong-password\n"
    )
    assert result.exit_code == 0, result.output
    assert "Password:" in result.output and "Repeat for confirmation:" in result.output
    assert "long-password" not in result.output
    assert staff_by_email(app, "mk@example.com").check_password("long-password")


def test_prompt_asks_again_when_confirmation_differs(app, runner):
    result = runner.invoke(
        args=["create-staff", "mk@example.com", "--role", "marketer"],
        input="long-password\nother-password\nlong-password\nlong-password\n",
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert staff_by_email(app, "mk@example.com").check_password("long-password")


def test_prompt_refuses_a_short_password(app, runner):
    result = runner.invoke(args=["create-staff", "mk@example.com", "--role", "marketer"], input="pw\npw\n")
    assert result.exit_code != 0
    assert "at least 8 characters" in result.output
    assert all_staff(app) == []


def test_short_password_option_is_refused(app, runner):
    result = runner.invoke(args=["create-staff", "ops@example.com", "--role", "admin", "--password", "short"])
    assert result.exit_code == 2
    assert "at least 8 characters" in result.output
    assert all_staff(app) == []


def test_invalid_email_is_refused(app, runner):
    result = runner.invoke(args=["create-staff", "not-an-email", "--role", "admin", "--password", "s3cret-enough"])
    assert result.exit_code == 2
    assert "Invalid value for 'EMAIL'" in result.output
    assert all_staff(app) == []


def test_email_domain_is_not_looked_up_in_dns_and_is_normalised(app, runner):
    # A DNS deliverability check would refuse this unregistered domain.
    result = runner.invoke(
        args=[
            "create-staff",
            "ops@Herald-Unregistered-Domain-4711.COM",
            "--role",
            "admin",
            "--password",
            "s3cret-enough",
        ]
    )
    assert result.exit_code == 0, result.output
    assert staff_by_email(app, "ops@herald-unregistered-domain-4711.com") is not None


def test_unknown_role_is_refused(app, runner):
    result = runner.invoke(args=["create-staff", "ops@example.com", "--role", "owner", "--password", "s3cret-enough"])
    assert result.exit_code == 2
    assert "'admin', 'marketer'" in result.output
    assert all_staff(app) == []


def test_role_is_required(app, runner):
    result = runner.invoke(args=["create-staff", "ops@example.com", "--password", "s3cret-enough"])
    assert result.exit_code == 2
    assert "Missing option '--role'" in result.output


def test_duplicate_email_is_a_clear_error_not_a_traceback(app, runner):
    with app.app_context():
        make_staff(email="ops@example.com")
    result = runner.invoke(
        args=["create-staff", "OPS@example.com", "--role", "marketer", "--password", "s3cret-enough"]
    )
    assert result.exit_code == 1
    assert result.output.strip() == "Error: a staff account for OPS@example.com already exists"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert len(all_staff(app)) == 1
