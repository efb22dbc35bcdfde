"""One source of truth for the dependency sets: pyproject.toml's extras. Every package an extra
installs is used (imported by the package, the tests or the benchmarks, or run by the
Makefile), the Makefile installs pyproject's lists rather than its own, and the test
environment satisfies the `dev` extra."""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))
from requirements import requirements  # noqa: E402

requirements_mod = pytest.importorskip("packaging.requirements")
Requirement = requirements_mod.Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
MAKEFILE = (ROOT / "Makefile").read_text()
# Distributions that are tools rather than imports: how the Makefile runs each.
TOOLS = {
    "pytest": "-m pytest",
    "mypy": "-m mypy",
    "ruff": "ruff check",
    "ziglang": "--zig",
    "maturin": "maturin develop",
}
# Distribution → the module it provides, where the names differ.
MODULES = {"typing-extensions": "typing_extensions"}


def sources() -> str:
    files = [*ROOT.glob("python/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("benches/*.py")]
    return "\n".join(p.read_text() for p in files if p.name != "test_extras.py")


def name(req: str) -> str:
    return Requirement(req).name.lower().replace("_", "-")


def every_requirement() -> list[str]:
    out = []
    for extra in EXTRAS:
        out += [r for r in requirements([extra]) if r not in out]
    return out


@pytest.mark.parametrize("req", every_requirement())
def test_every_package_of_an_extra_is_used(req):
    dist = name(req)
    if dist in TOOLS:
        assert TOOLS[dist] in MAKEFILE, f"{dist} is in an extra but the Makefile never runs it"
        return
    module = MODULES.get(dist, dist.replace("-", "_"))
    pattern = rf"^\s*(import|from) {module}\b|importorskip\(\s*\"{module}\b"
    assert re.search(pattern, sources(), re.M), f"{req}: nothing imports {module}"


def test_the_redis_extra_is_empty_and_kept_for_one_release():
    # The Redis client is in the Rust core; `pip install modelrouter[redis]` still resolves.
    assert EXTRAS["redis"] == []


def test_the_server_extra_brings_the_fast_uvicorn():
    server = {name(r): Requirement(r) for r in EXTRAS["server"]}
    assert server["uvicorn"].extras == {"standard"}
    # Upper bounds where an unpinned upgrade already warned in the suite.
    for dist in ("fastapi", "starlette", "uvicorn"):
        assert any(s.operator == "<" for s in server[dist].specifier), dist


def test_the_makefile_installs_pyproject_lists_only():
    installs = [line for line in MAKEFILE.splitlines() if "$(PIP) install" in line]
    assert installs, "the Makefile installs nothing?"
    for line in installs:
        # Only pip itself or a requirements file that .ci/requirements.py wrote from pyproject.
        assert re.search(
            r"install -q (--upgrade pip|-r \$\(VENV\)/requirements-\w+\.txt)$", line
        ), line
    for target in ("build runtime plot", "dev", "bench"):
        assert f"$(REQS) {target} > " in MAKEFILE


def test_self_references_expand_in_place_once(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = ["maturin"]\n[project]\nname = "modelrouter"\n'
        'dependencies = ["numpy"]\n[project.optional-dependencies]\n'
        'a = ["x>=1"]\nb = ["y", "Modelrouter[a]"]\nc = ["modelrouter[a,b]", "x>=1", "z"]\n'
    )
    assert requirements(["c"], pyproject) == ["x>=1", "y", "z"]
    assert requirements(["build", "runtime"], pyproject) == ["maturin", "numpy"]
    with pytest.raises(SystemExit, match="no extra 'd'"):
        requirements(["d"], pyproject)


@pytest.mark.parametrize("req", requirements(["dev"]))
def test_this_environment_satisfies_the_dev_extra(req):
    r = Requirement(req)
    if r.marker is not None and not r.marker.evaluate():
        return
    try:
        version = metadata.version(r.name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{req} is in the dev extra but not installed (make dev-deps)")
    assert r.specifier.contains(version, prereleases=True), f"{r.name} {version} !~ {req}"
    if name(req) not in TOOLS and name(req) != "ziglang":
        assert importlib.util.find_spec(MODULES.get(name(req), name(req).replace("-", "_")))
