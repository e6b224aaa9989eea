"""The console dashboard's shared counts, refreshed by a worker when a viewer finds them stale."""

from __future__ import annotations

from app.console.stats import refresh_snapshot


def refresh_dashboard_counts() -> None:
    """Enqueued by name from ``app.console.stats.request_refresh``; releases its lock when done."""
    refresh_snapshot()
