"""The public API: ``modelrouter.__all__`` names every public class and function of the core,
the error classes and the version; the core's stub agrees with the extension and with it."""

from __future__ import annotations

import ast
import importlib.resources

import modelrouter as mr
from modelrouter import _core, errors

ERRORS = set(errors.__all__)


def stub_all() -> list[str]:
    """``__all__`` of ``_core.pyi``, read as source (stubs are not importable)."""
    text = importlib.resources.files("modelrouter").joinpath("_core.pyi").read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("_core.pyi has no __all__")


def test_all_has_no_duplicates_and_every_entry_exists():
    assert len(mr.__all__) == len(set(mr.__all__))
    missing = [name for name in mr.__all__ if not hasattr(mr, name)]
    assert missing == []


def test_star_import_brings_every_name_of_all():
    namespace: dict[str, object] = {}
    exec("from modelrouter import *", namespace)
    for name in mr.__all__:
        assert namespace.get(name) is getattr(mr, name), name


def test_all_is_the_core_plus_the_errors():
    assert set(mr.__all__) == set(stub_all()) | ERRORS
    for name in ("__version__", "now", "STRATEGIES", "POLICIES", "LatencyHistogram"):
        assert name in mr.__all__
    # Errors come from modelrouter.errors (the classes the core raises), not from _core.
    assert all(getattr(mr, name) is getattr(errors, name) for name in ERRORS)


def test_stub_all_matches_what_the_extension_exports():
    public = {name for name in dir(_core) if not name.startswith("_")} | {"__version__"}
    # Anything the core exports that is not in the stub's __all__ would be missed by
    # `from modelrouter import *` users and by the docs; anything extra would not import.
    assert set(stub_all()) == public - ERRORS
    assert len(stub_all()) == len(set(stub_all()))


def test_core_names_are_the_same_objects_at_the_top_level():
    for name in stub_all():
        assert getattr(mr, name) is getattr(_core, name), name
