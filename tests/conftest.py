"""Shared fixtures: the hypothesis profile, and the decision-store databases (``url`` for each
engine, ``store`` opened on it, ``postgres_admin_url`` for a server that may create databases).

Peers (Redis, PostgreSQL) are started by :mod:`modelrouter.testing`, which the benchmarks use
too; test modules import nothing from each other except the spawned Redis workers."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from modelrouter.store import open_store
from modelrouter.testing import postgres

# Under CI a skipped test (a missing peer) fails: see modelrouter/testing/ci_skips.py.
pytest_plugins = ["modelrouter.testing.ci_skips"]

settings.register_profile(
    "default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")


@pytest.fixture(scope="session")
def postgres_admin_url():
    """``MODELROUTER_TEST_POSTGRES_URL``, else a throwaway local cluster (skips without one)."""
    url = os.environ.get("MODELROUTER_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    try:
        pytest.importorskip("psycopg", reason="psycopg is not installed")
        with postgres.cluster() as admin_url:
            yield admin_url
    except postgres.Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A URL to an empty decision-store database of each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    admin = request.getfixturevalue("postgres_admin_url")
    with postgres.database(admin) as db_url:
        yield db_url


@pytest.fixture
def store(url):
    """A decision store opened on ``url``, closed after the test."""
    s = open_store(url)
    yield s
    s.close()
