"""Checks the built wheel the way a user meets it (`make wheel-check`, part of `make test`):

- its platform tag is manylinux2014 (manylinux_2_17), and no symbol of the extension needs a
  glibc newer than 2.17, so it installs on older distributions;
- it carries the license file and the project URLs;
- installed into a fresh venv with its declared dependencies only (numpy), `import modelrouter`
  works and `modelrouter simulate` prints its table.

    python .ci/wheel_check.py dist/
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MAX_GLIBC = (2, 17)


def newest_wheel(directory: Path) -> Path:
    wheels = sorted(directory.glob("modelrouter-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise SystemExit(f"no modelrouter wheel in {directory}")
    return wheels[-1]


def check_contents(wheel: Path) -> list[str]:
    """Problems with the wheel's tag, license, URLs and glibc needs (empty when none)."""
    problems = []
    platform = wheel.name.removesuffix(".whl").split("-")[-1]
    if "manylinux_2_17" not in platform and "manylinux2014" not in platform:
        problems.append(f"platform tag {platform!r} is not manylinux2014 / manylinux_2_17")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        meta = z.read(meta_name).decode() if meta_name else ""
        if not any(re.search(r"\.dist-info/(licenses/)?LICENSE$", n) for n in names):
            problems.append("no LICENSE file in the wheel's .dist-info")
        if not re.search(r"^License-Expression: MIT$|^License: MIT$", meta, re.M):
            problems.append("METADATA declares no MIT license")
        if not re.search(r"^Project-URL: ", meta, re.M):
            problems.append("METADATA has no Project-URL")
        for name in names:
            if name.endswith(".so"):
                needed = {
                    tuple(int(x) for x in v.split(b"."))
                    for v in re.findall(rb"GLIBC_([0-9]+\.[0-9]+(?:\.[0-9]+)?)", z.read(name))
                }
                newest = max(needed, default=(0,))
                if newest[:2] > MAX_GLIBC:
                    shown = ".".join(map(str, newest))
                    problems.append(f"{name} needs GLIBC_{shown} (> 2.17)")
    return problems


def check_install(wheel: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="mr-wheel-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = venv / "bin" / "python"
        subprocess.run([py, "-m", "pip", "install", "-q", str(wheel)], check=True)
        installed = subprocess.run(
            [py, "-m", "pip", "list", "--format=freeze"], check=True, capture_output=True, text=True
        ).stdout
        names = sorted(line.split("==")[0].lower() for line in installed.split())
        extra = set(names) - {"modelrouter", "numpy", "pip", "setuptools", "typing-extensions"}
        if extra:
            raise SystemExit(f"the wheel pulled in more than numpy: {sorted(extra)}")
        run = [py, "-c", "import modelrouter, sys; sys.stdout.write(modelrouter.__version__)"]
        version = subprocess.run(run, check=True, capture_output=True, text=True, cwd=tmp)
        cli = [venv / "bin" / "modelrouter", "simulate", "--requests", "20000", "--no-plot"]
        out = subprocess.run(cli, check=True, capture_output=True, text=True, cwd=tmp).stdout
        if "P99 latency" not in out or "predictive" not in out:
            raise SystemExit(f"`modelrouter simulate` printed no table:\n{out}")
        print(f"{wheel.name}: modelrouter {version.stdout} installs with numpy alone and runs")


def main(argv: list[str]) -> int:
    wheel = newest_wheel(Path(argv[0] if argv else "dist"))
    problems = check_contents(wheel)
    if problems:
        print("\n".join(f"{wheel.name}: {p}" for p in problems), file=sys.stderr)
        return 1
    check_install(wheel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
