"""The CI plugin: a skip (a missing peer) passes on a developer's machine and fails under CI,
at run time and at collection alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = """
import pytest

def test_needs_a_peer():
    pytest.skip("redis-server is not installed")

def test_plain():
    assert True

@pytest.mark.xfail(reason="known")
def test_known_failure():
    assert False
"""

COLLECTION = """
import pytest
pytest.importorskip("a_module_nobody_has", reason="the extra is not installed")

def test_never_collected():
    pass
"""


def run(tmp_path: Path, source: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugin under test
    if ci is not None:
        env["CI"] = ci
    cmd = [sys.executable, "-m", "pytest", "-p", "modelrouter.testing.ci_skips", "-rs", "-q"]
    cmd += ["-p", "no:cacheprovider", "-c", os.devnull, str(tmp_path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("source", [SUITE, COLLECTION], ids=["run", "collection"])
def test_skips_pass_locally_and_fail_under_ci(tmp_path: Path, source: str) -> None:
    local = run(tmp_path, source, None)
    assert local.returncode in (0, 5), local.stdout  # 5: nothing left to run
    assert "skipped" in local.stdout and "not installed" in local.stdout
    ci = run(tmp_path, source, "true")
    assert ci.returncode == (1 if source is SUITE else 2), ci.stdout  # 2: collection error
    assert "skipped under CI, where every peer must be installed" in ci.stdout
    assert "not installed" in ci.stdout
    if source is SUITE:
        assert "1 failed, 1 passed, 1 xfailed" in ci.stdout
