"""The Rust core's own Redis tests (`src/redis_backend/tests.rs`), `#[ignore]`d in a plain
`cargo test` (reported as ignored, never as passed), run here with `--ignored` against a real
redis-server and a real 3-node Cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from modelrouter.testing.redis_server import CLI, REDIS, Cluster, RedisServer, running

ROOT = Path(__file__).resolve().parent.parent
CARGO = shutil.which("cargo")
TESTS = [
    "admission_is_bounded_and_release_is_idempotent",
    "unrenewed_leases_expire",
    "a_forgotten_lease_is_removed",
]

pytestmark = pytest.mark.skipif(
    CARGO is None or REDIS is None or CLI is None or not (ROOT / "Cargo.toml").exists(),
    reason="needs cargo, the source tree, redis-server and redis-cli",
)


def run_rust_tests(url: str, zrems: Callable[[], int]) -> None:
    """Runs TESTS against `url`; `zrems()` counts the server's ZREM calls (proof they ran)."""
    before = zrems()
    assert CARGO is not None
    cmd = [
        CARGO,
        "test",
        "--quiet",
        "--features",
        "redis-backend",
        "--lib",
        "--",
        "--ignored",
        *TESTS,
    ]
    env = {**os.environ, "MODELROUTER_TEST_REDIS_URL": url}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"test result: ok. {len(TESTS)} passed" in out.stdout, out.stdout
    assert zrems() > before, "the Rust tests did not reach the server"


def test_rust_redis_tests_against_one_server() -> None:
    with running(RedisServer) as server:
        run_rust_tests(server.url, lambda: server.calls("zrem"))


def test_rust_redis_tests_against_a_cluster() -> None:
    with running(Cluster) as cluster:
        run_rust_tests(cluster.url, lambda: cluster.calls("zrem"))
