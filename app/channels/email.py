"""Email over SMTP (filled in by the delivery core)."""
