"""The console's blueprint, on its own so the area modules that register routes on it do not import their package."""

from flask import Blueprint

from app.channels import channel_names

bp = Blueprint("console", "app.console", url_prefix="/console")
bp.add_app_template_global(channel_names)

# Old root addresses people bookmarked before the console moved under /console/; the rest moved without redirects.
bookmarks = Blueprint("console_bookmarks", "app.console")
