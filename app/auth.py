"""Who is calling: staff sessions (flask-login) and role checks."""

from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import current_user, login_required

from app.extensions import db, login_manager
from app.models import StaffUser

login_manager.login_view = "console.login"
login_manager.login_message = "Please sign in to continue."
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_staff_user(user_id: str) -> StaffUser | None:
    if not user_id.isdigit():
        return None
    user = db.session.get(StaffUser, int(user_id))
    return user if user is not None and user.active else None  # deactivation ends live sessions too


def admin_required(view):
    """Marketers reaching an admin page get 403, anonymous visitors the sign-in page."""

    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            abort(403, "This page is for admins.")
        return view(*args, **kwargs)

    return wrapper
