"""The /v1 JSON API used by other services."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/v1")

from app.api import routes  # noqa: E402,F401
from app.api import attributes  # noqa: E402,F401
