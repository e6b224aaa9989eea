"""Provider callbacks (delivery receipts, bounces, inbound SMS), verified by signature."""

from app.webhooks import email, ses, sms  # noqa: F401  (register the routes)
from app.webhooks.blueprint import bp  # noqa: F401  (create_app registers it)
