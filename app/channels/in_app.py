"""In-app channel (filled in by the delivery core)."""
