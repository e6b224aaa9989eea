"""The /v1 JSON API used by other services."""
from app.api.blueprint import bp  # noqa: F401  (create_app registers it)
from app.api import routes  # noqa: E402,F401  (registers the routes; before attributes, as it always was)
from app.api import attributes  # noqa: E402,F401
from app.api import topics, bulk  # noqa: E402,F401  (topics and bulk sends: issue 17)
