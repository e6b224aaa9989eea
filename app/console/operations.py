"""Console area: operations (being built)."""
