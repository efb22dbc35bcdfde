"""A pytest plugin: under CI (``CI=true``) a skipped test fails.

Every skip in this suite means a missing peer (redis-server, PostgreSQL, Chromium, an optional
Python package). On a developer's machine that is a skip with its reason in the summary; in CI,
which installs every peer, it would hide a broken install step behind a green run, so it is a
failure naming the reason. Load it with ``-p modelrouter.testing.ci_skips`` or from a conftest's
``pytest_plugins``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def strict() -> bool:
    """True under CI, where every peer the tests need must be there."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail(report: Any) -> None:
    reason = _reason(report).removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"skipped under CI, where every peer must be installed: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and strict() and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    # A module-level importorskip skips at collection; changed here, before anything reads it.
    outcome = yield
    report = outcome.get_result()
    if report.skipped and strict():
        _fail(report)
