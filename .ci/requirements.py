"""Prints, one per line, the requirements pyproject.toml lists for the given sets, so that the
Makefile installs exactly what the extras declare (pyproject is the one source of truth).

    python .ci/requirements.py build runtime plot     # the venv's bootstrap
    python .ci/requirements.py dev                    # every test and lint dependency

A set is an extra of ``[project.optional-dependencies]``, or ``build`` (the build-system's
requirements) or ``runtime`` (``[project] dependencies``). An extra that names this project
(``modelrouter[server,plot]``) is expanded in place; each requirement is printed once.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: the copy of tomli that pip vendors
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SELF = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*\[([^\]]*)\]\s*$")


def requirements(names: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    sets = {
        "build": data["build-system"]["requires"],
        "runtime": project.get("dependencies", []),
        **extras,
    }
    out: list[str] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        if name not in sets:
            raise SystemExit(f"pyproject.toml has no extra {name!r} (known: {sorted(sets)})")
        if name in seen:
            return
        seen.add(name)
        for req in sets[name]:
            own = SELF.match(req)
            if own and own.group(1).lower() == project["name"].lower():
                for extra in own.group(2).split(","):
                    add(extra.strip())
            elif req not in out:
                out.append(req)

    for name in names:
        add(name)
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:])))
