"""The README's Python examples run as written (so they cannot drift from the API)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_usage_and_feedback_examples_run(capsys):
    blocks = python_blocks()
    usage = next(b for b in blocks if "mr.cost_matrix(agents, models)" in b)
    feedback = next(b for b in blocks if "mr.PerformanceTracker(" in b)
    namespace: dict = {}
    exec(usage, namespace)
    assert namespace["result"].to_dict()["strategy_used"] == "optimal"
    exec(feedback, namespace)  # reuses `models` from the usage example
    assert namespace["perf"].stats("llama3-70b").count == 1
    assert "coder -> llama3-70b" in capsys.readouterr().out


def test_failure_handling_example_runs_as_its_comments_say():
    block = next(b for b in python_blocks() if "router.call(agent, call_model" in b)
    namespace: dict = {}
    exec(block, namespace)
    router, agent = namespace["router"], namespace["agent"]
    assert router.health_of("a")["state"] == "cooling_down"
    assert router.call(agent, namespace["call_model"]) == "answer from b"
