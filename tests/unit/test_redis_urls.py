"""REDIS_URL's forms, Sentinel included: what each means, and a clear error for a malformed one."""

from __future__ import annotations

import pytest

from app.redis_client import SentinelTarget, limits_storage, parse_sentinel_url
from app.settings_values import ConfigError, check_redis_url


def test_a_sentinel_url_names_its_sentinels_service_and_database():
    assert parse_sentinel_url("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/herald/2") == SentinelTarget(
        (("10.0.0.1", 26379), ("10.0.0.2", 26380)), "herald", 2
    )


def test_a_sentinel_url_without_database_uses_0_and_may_carry_a_password():
    target = parse_sentinel_url("redis+sentinel://:s%40cret@sentinel:26379/herald")
    assert (target.sentinels, target.service_name, target.db, target.password) == (
        (("sentinel", 26379),),
        "herald",
        0,
        "s@cret",
    )
    assert target.auth == {"password": "s@cret"}


@pytest.mark.parametrize(
    "url, says",
    [
        ("redis+sentinel://sentinel/herald", "host:port"),
        ("redis+sentinel://sentinel:26379", "service_name"),
        ("redis+sentinel://sentinel:26379/herald/zero", "database must be a number"),
        ("redis+sentinel://sentinel:26379/herald/0/extra", "service_name"),
        ("redis+sentinel://a:1,:2/herald", "host:port"),
    ],
)
def test_a_malformed_sentinel_url_stops_the_process_with_one_line_naming_the_form(url, says):
    with pytest.raises(ConfigError) as error:
        check_redis_url(url)
    assert "REDIS_URL must look like redis+sentinel://" in str(error.value) and says in str(error.value)


def test_other_schemes_are_still_refused_and_the_known_ones_accepted():
    with pytest.raises(ConfigError, match="redis\\+sentinel://"):
        check_redis_url("memcached://x:1")
    for url in ("redis://h:6379/0", "rediss://h:6380/1", "unix:///tmp/r.sock", "redis+sentinel://h:26379/herald/1"):
        assert check_redis_url(url) == url


def test_the_rate_limiter_gets_the_limits_spelling_of_each_url():
    timeouts = {"socket_timeout": 1}
    assert limits_storage("redis://h:6379/3", timeouts) == ("redis://h:6379/3", timeouts)
    assert limits_storage("unix:///tmp/r.sock", {}) == ("redis+unix:///tmp/r.sock", {})
    uri, options = limits_storage("redis+sentinel://:p%3Aw@a:1,b:2/herald/4", timeouts)
    assert uri == "redis+sentinel://a:1,b:2/herald"
    assert options == {
        "socket_timeout": 1,
        "password": "p:w",
        "db": 4,
        "use_replicas": False,
        "sentinel_kwargs": {"socket_timeout": 1},
    }
