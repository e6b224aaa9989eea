"""Realtime in-app updates: publishing now; the multiplexed SSE stream builds on it."""
