"""End-user pages: the inbox, preferences, and one-click unsubscribe."""
from flask import Blueprint

bp = Blueprint("inbox", __name__)

from app.inbox import routes, unsubscribe  # noqa: E402,F401
