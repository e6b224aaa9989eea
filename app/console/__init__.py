"""Staff console (htmx). One module per area; each registers its routes on ``bp``."""
from flask import Blueprint

from app.channels import channel_names

bp = Blueprint("console", __name__)
bp.add_app_template_global(channel_names)

from app.console import (  # noqa: E402,F401
    analytics,
    audiences,
    campaigns,
    new_api_key,
    operations,
    recipients,
    routes,
    rules,
    templates_editor,
)
