"""The API's blueprint, on its own so the modules that register routes on it do not import their package."""

from flask import Blueprint

bp = Blueprint("api", "app.api", url_prefix="/v1")
