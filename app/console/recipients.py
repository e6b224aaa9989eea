"""Console area: recipients (being built)."""
