"""Console area: analytics (being built)."""
