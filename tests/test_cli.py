"""The command line as a newcomer meets it: shipped scenarios named in the help and in the
error for an unknown one, and `serve` quiet (no access log) unless asked."""

from __future__ import annotations

import pytest

from modelrouter import cli
from modelrouter.types import SCENARIO_DIR, shipped_scenarios


def test_the_shipped_scenarios_are_the_package_files():
    names = shipped_scenarios()
    assert names == sorted(p.stem for p in SCENARIO_DIR.glob("*.json"))
    assert {"heterogeneous", "outage", "seed_assign", "seed_overload"} <= set(names)


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--no-plot", "--scenario", "heterogenous"],
        ["assign", "--scenario", "heterogenous"],
    ],
)
def test_an_unknown_scenario_name_lists_the_shipped_ones(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'heterogenous'" in err
    assert ", ".join(shipped_scenarios()) in err
    assert "cannot read" not in err


@pytest.mark.parametrize("command", ["simulate", "assign", "serve"])
def test_help_lists_the_shipped_scenarios(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert ", ".join(shipped_scenarios()) in out


def test_serve_has_no_access_log_unless_asked(monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    seen: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.append(kw))
    assert cli.main(["serve", "--no-store"]) == 0
    assert cli.main(["serve", "--no-store", "--access-log"]) == 0
    assert [kw["access_log"] for kw in seen] == [False, True]
