"""Per-key rate limits leased in blocks (app/redis_outage.py): one Redis call per block, never more than the limit."""

from __future__ import annotations

import time

from limits import parse
from limits.strategies import FixedWindowRateLimiter

from app.extensions import limiter
from app.redis_outage import charge_api_key, lease_size


def test_small_limits_count_every_request_in_redis_and_large_ones_lease_a_thousandth():
    assert [lease_size(amount) for amount in (1, 600, 1999, 2000, 6000, 1_000_000)] == [1, 1, 1, 2, 6, 1000]


def test_a_leased_limit_admits_at_most_the_limit_and_refuses_at_most_one_block_early(app):
    primary = FixedWindowRateLimiter(limiter.storage)
    rate = "2001/hour"  # blocks of 2: the last hit of the window is leased with the one after it
    admitted = sum(charge_api_key(primary, 7, rate).allowed for _ in range(2010))
    assert 2001 - lease_size(2001) <= admitted <= 2001
    _reset, remaining = primary.get_window_stats(parse(rate), "api-key", "7")
    assert remaining == 0


def test_a_lease_ends_with_the_redis_window_it_was_counted_in(app):
    primary, rate = FixedWindowRateLimiter(limiter.storage), "4000/second"
    assert charge_api_key(primary, 8, rate).allowed  # leases 4: this request's and 3 more
    assert primary.get_window_stats(parse(rate), "api-key", "8")[1] == 3996
    assert charge_api_key(primary, 8, rate).allowed  # spent from the lease: Redis not asked
    assert primary.get_window_stats(parse(rate), "api-key", "8")[1] == 3996
    time.sleep(1.1)
    assert charge_api_key(primary, 8, rate).allowed  # the window ended: the 2 left are not spent in the next
    assert primary.get_window_stats(parse(rate), "api-key", "8")[1] == 3996
