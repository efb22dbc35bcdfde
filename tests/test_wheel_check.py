"""The wheel check `make wheel-check` runs (.ci/wheel_check.py) catches what made the old wheel
unportable: a manylinux_2_34 tag or a symbol from a glibc newer than 2.17, no license file, no
project URLs. Checked here on small hand-made wheels; `make test` runs it on the real one."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".ci"))
from wheel_check import check_contents  # noqa: E402

GOOD_META = "Metadata-Version: 2.4\nName: modelrouter\nLicense-Expression: MIT\n" + (
    "Project-URL: Homepage, https://example.org\n"
)
TAG = "cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64"


def wheel(tmp_path, tag=TAG, meta=GOOD_META, license=True, so=b"\0GLIBC_2.2.5\0GLIBC_2.17\0"):
    path = tmp_path / f"modelrouter-0.1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("modelrouter-0.1.0.dist-info/METADATA", meta)
        if license:
            z.writestr("modelrouter-0.1.0.dist-info/licenses/LICENSE", "MIT License\n")
        z.writestr("modelrouter/_core.abi3.so", so)
    return path


def test_a_portable_wheel_passes(tmp_path):
    assert check_contents(wheel(tmp_path)) == []


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"tag": "cp39-abi3-manylinux_2_34_x86_64"}, "is not manylinux2014"),
        ({"so": b"\0GLIBC_2.17\0GLIBC_2.34\0"}, "needs GLIBC_2.34 (> 2.17)"),
        ({"license": False}, "no LICENSE file"),
        ({"meta": "Name: modelrouter\nLicense-Expression: MIT\n"}, "no Project-URL"),
        ({"meta": "Name: modelrouter\nProject-URL: H, https://x\n"}, "no MIT license"),
    ],
)
def test_each_defect_is_reported(tmp_path, kwargs, problem):
    problems = check_contents(wheel(tmp_path, **kwargs))
    assert len(problems) == 1 and problem in problems[0], problems


def test_the_project_ships_a_license_and_urls():
    root = Path(__file__).resolve().parents[1]
    assert (root / "LICENSE").read_text().startswith("MIT License")
    text = (root / "pyproject.toml").read_text()
    assert 'license-files = ["LICENSE"]' in text and "[project.urls]" in text
