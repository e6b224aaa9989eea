"""Staff console (htmx). One module per area; each registers its routes on ``bp``."""

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
    webhook_request_log,
    webhooks,
    workflows,
)
from app.console.blueprint import bookmarks, bp  # noqa: F401  (create_app registers them)
