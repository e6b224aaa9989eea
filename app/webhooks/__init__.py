"""Provider callbacks (delivery receipts, bounces, inbound SMS), verified by signature."""
from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

from app.webhooks import email, sms  # noqa: E402,F401  (register the routes)
