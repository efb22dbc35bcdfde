"""scipy's own test file for ``linear_sum_assignment``, run against the drop-in.

The file is read at test time from the installed scipy package (its wheels ship
``scipy/optimize/tests/test_linear_assignment.py``; it is not copied here). Its one import of
``linear_sum_assignment`` is pointed at ``modelrouter.linear_sum_assignment`` and its tests are
re-exported from this module, so pytest collects them with their parametrizations unchanged."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

import modelrouter as mr

SCIPY_IMPORT = "from scipy.optimize import linear_sum_assignment\n"


def _load_scipy_suite() -> types.ModuleType:
    spec = importlib.util.find_spec("scipy.optimize.tests.test_linear_assignment")
    if spec is None or spec.origin is None:
        pytest.skip("scipy's test_linear_assignment.py is not installed", allow_module_level=True)
    source = Path(spec.origin).read_text(encoding="utf-8")
    # Exactly one import to redirect; anything else means the file changed shape.
    assert source.count(SCIPY_IMPORT) == 1, "scipy's import line not found exactly once"
    source = source.replace(SCIPY_IMPORT, "from modelrouter import linear_sum_assignment\n")
    module = types.ModuleType("scipy_test_linear_assignment_on_modelrouter")
    module.__file__ = spec.origin
    exec(compile(source, spec.origin, "exec"), module.__dict__)
    assert module.linear_sum_assignment is mr.linear_sum_assignment
    return module


_suite = _load_scipy_suite()
SCIPY_TESTS = sorted(name for name in vars(_suite) if name.startswith("test_"))
globals().update({name: getattr(_suite, name) for name in SCIPY_TESTS})


def test_scipy_suite_is_collected() -> None:
    """The redirected file contributed its tests (guards against silently collecting none)."""
    assert len(SCIPY_TESTS) >= 10
    assert "test_constant_cost_matrix" in SCIPY_TESTS
