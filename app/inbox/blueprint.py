"""The inbox's blueprint, on its own so the modules that register routes on it do not import their package."""

from flask import Blueprint

bp = Blueprint("inbox", "app.inbox")
