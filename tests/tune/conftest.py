"""Fixtures shared by the tune tests."""

import pytest

from tests.tune import pg


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server for one test module (skipped, saying why, without the binaries)."""
    reason = pg.unavailable()
    if reason:
        pytest.skip(reason)
    with pg.postgres_server() as url:
        yield url
