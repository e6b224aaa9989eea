"""Console pages: sign-in, sign-out and the dashboard."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from app.console.blueprint import bookmarks, bp
from app.console.forms import LoginForm
from app.console.stats import dashboard_counts
from app.extensions import db, htmx, limiter
from app.models import StaffUser
from app.models.types import utcnow

WRONG_CREDENTIALS = "Wrong email or password."
ACCOUNT_DISABLED = "This account is disabled. Ask an admin to enable it."
PUBLIC_ENDPOINTS = frozenset({"console.login", "console.logout"})

# Checked when the email is unknown, so a miss costs as long as a wrong
# password and response times do not reveal which emails have accounts.
_DUMMY_HASH = generate_password_hash("herald-timing-equaliser")


def safe_next_path(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirects)."""
    if not target or not target.startswith("/") or "\\" in target:
        return None
    if any(ord(char) < 32 or ord(char) == 127 for char in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def authenticate(email: str, password: str) -> StaffUser | None:
    """The staff account these credentials open, or None."""
    staff = db.session.scalar(select(StaffUser).where(func.lower(StaffUser.email) == email.strip().lower()))
    if staff is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return staff if staff.check_password(password) else None


@bp.before_request
def _send_expired_htmx_polls_to_login():
    """A poll whose session ended would swap the sign-in page into a panel; reload the whole page instead."""
    if htmx and not current_user.is_authenticated and request.endpoint not in PUBLIC_ENDPOINTS:
        return "", 204, {"HX-Redirect": url_for("console.login", next=request.path)}
    return None


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(
    "10/minute;50/hour",
    key_func=get_remote_address,
    methods=["POST"],
    error_message="Too many sign-in attempts from your address; wait a minute and try again.",
)
def login():
    if current_user.is_authenticated:
        return redirect(url_for("console.dashboard"))
    form = LoginForm(next=request.args.get("next", ""))
    error = None
    if form.validate_on_submit():
        staff = authenticate(form.email.data, form.password.data)
        if staff is None:
            error = WRONG_CREDENTIALS
        elif not staff.is_active:
            error = ACCOUNT_DISABLED
        else:
            login_user(staff)
            staff.last_login_at = utcnow()
            db.session.commit()
            return redirect(safe_next_path(form.next.data) or url_for("console.dashboard"))
    return render_template("console/login.html", form=form, error=error)


@bp.post("/logout")
def logout():
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("console.login"))


@bp.get("/")
@login_required
def dashboard():
    counts = dashboard_counts()
    if htmx:
        return render_template("partials/_dashboard_counts.html", counts=counts)
    return render_template("console/dashboard.html", counts=counts)


@bookmarks.get("/")
def root():
    return redirect(url_for("console.dashboard"), 302)


@bookmarks.get("/login")
def old_login():
    """Keeps ``?next=`` so a bookmarked sign-in link still lands where it pointed."""
    query = request.query_string.decode("latin-1")
    return redirect(url_for("console.login") + ("?" + query if query else ""), 301)
