"""Console area: campaigns (being built)."""
