"""End-user pages: the inbox, preferences, one-click unsubscribe and tracked links."""
from flask import Blueprint

bp = Blueprint("inbox", __name__)

from app.inbox import clicks, routes, unsubscribe  # noqa: E402,F401
