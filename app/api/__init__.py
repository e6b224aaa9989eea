"""The /v1 JSON API used by other services."""

from app.api import attributes, bulk, routes, topics, webhook_endpoints, workflows  # noqa: F401  (register the routes)
from app.api.blueprint import bp  # noqa: F401  (create_app registers it)
