"""Console area: rules (being built)."""
