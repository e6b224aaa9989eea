"""Console area: audiences (being built)."""
