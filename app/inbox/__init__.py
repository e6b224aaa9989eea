"""End-user pages: the inbox, preferences, one-click unsubscribe and tracked links."""

from app.inbox import clicks, routes, topics, unsubscribe  # noqa: F401  (register the routes)
from app.inbox.blueprint import bp  # noqa: F401  (create_app registers it)
