"""Retry policy for transient provider errors: exponential backoff with jitter."""

from __future__ import annotations

import random

RETRY_DELAYS = (1, 2, 4, 8, 16)
MAX_ATTEMPTS = 1 + len(RETRY_DELAYS)  # the first try, then five retries
JITTER = 0.2


def next_retry_delay(attempts_made: int, rng: random.Random | None = None) -> float | None:
    """Seconds to wait before the next try after ``attempts_made`` failed tries; None when spent.

    Jitter of +-20% spreads the retries of many deliveries that failed together
    (a provider outage) so they do not return as one thundering herd.
    """
    if attempts_made < 1 or attempts_made >= MAX_ATTEMPTS:
        return None
    base = RETRY_DELAYS[attempts_made - 1]
    factor = 1 + (rng or random).uniform(-JITTER, JITTER)
    return round(base * factor, 3)
