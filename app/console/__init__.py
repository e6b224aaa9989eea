"""Staff console (htmx). One module per area; each registers its routes on ``bp``."""
from app.console.blueprint import bp  # noqa: F401  (create_app registers it)
from app.console import (  # noqa: F401  (register the routes)
    analytics,
    audiences,
    campaigns,
    new_api_key,
    operations,
    recipients,
    routes,
    rules,
    templates_editor,
    topics,
)
