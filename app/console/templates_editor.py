"""Console area: templates editor (being built)."""
