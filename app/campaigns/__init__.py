"""Campaigns: compose, plan, fan out to an audience in batches, and report progress."""
