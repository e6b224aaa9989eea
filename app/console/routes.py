"""Console pages."""
from flask import redirect

from app.console import bp


@bp.get("/")
def index():
    return redirect("/healthz")
