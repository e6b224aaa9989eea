"""Audiences: who matches a filter, compiled to one SQL query."""
