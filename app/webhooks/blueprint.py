"""The webhooks' blueprint, on its own so the modules that register routes on it do not import their package."""

from flask import Blueprint

bp = Blueprint("webhooks", "app.webhooks", url_prefix="/webhooks")
