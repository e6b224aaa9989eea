"""API resources (filled in by the delivery core)."""
