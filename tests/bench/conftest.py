import os

import pytest


@pytest.fixture
def bench_env(app, test_env):
    """Environment for the processes a benchmark starts (same database and Redis as the test run)."""
    return {**os.environ, **test_env}
