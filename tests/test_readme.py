"""The README's Python examples run as written (so they cannot drift from the API): every
```python block, each on its own (no names from an earlier block), in an empty working
directory that it must leave empty."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from modelrouter.testing.redis_server import RedisServer

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


BLOCKS = python_blocks()


@pytest.fixture(scope="module")
def redis_url():
    server = RedisServer().start()
    yield server.url
    server.stop()


@pytest.fixture
def sandbox(tmp_path, monkeypatch, redis_url):
    """An empty working directory, `REDIS_URL` on a throwaway server, signal handlers restored."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("REDIS_URL", redis_url)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield cwd
    for s, h in handlers.items():
        signal.signal(s, h)


def run(block: str) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(block, str(README), "exec"), namespace)
    return namespace


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i}")
def test_every_block_runs_alone_and_writes_nothing_to_the_working_directory(index, sandbox):
    run(BLOCKS[index])
    assert sorted(os.listdir(sandbox)) == []


def block_with(text: str) -> str:
    return next(b for b in BLOCKS if text in b)


def test_usage_example_does_what_its_comments_say(sandbox, capsys):
    ns = run(block_with("mr.cost_matrix(agents, models)"))
    assert ns["result"].to_dict()["strategy_used"] == "optimal"
    assert "coder -> llama3-70b" in capsys.readouterr().out


def test_live_load_example_defines_its_placeholders(sandbox, capsys):
    ns = run(block_with("async with router.request(agent)"))
    assert callable(ns["call_model"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] in ("answer from llama3-70b", "answer from mixtral")
    assert out[1].startswith("ModelLoad('llama3-70b', active_requests=0")


def test_feedback_example_records_one_sample(sandbox):
    ns = run(block_with("mr.PerformanceTracker("))
    assert ns["perf"].stats("llama3-70b").count == 1


def test_failure_handling_example_runs_as_its_comments_say(sandbox):
    ns = run(block_with("router.call(agent, call_model"))
    router, agent = ns["router"], ns["agent"]
    assert router.health_of("a")["state"] == "cooling_down"
    assert router.call(agent, ns["call_model"]) == "answer from b"


def test_redis_example_shares_its_counts_through_the_server(sandbox, capsys):
    ns = run(block_with("backend=url"))
    status = ns["tracker"].backend_status()
    assert status["available"] is True and status["fail_open_events"] == 0
    assert "'available': True" in capsys.readouterr().out


def test_store_example_prints_the_same_counts_on_every_run(sandbox, capsys):
    block = block_with("open_store(")
    outputs = []
    for _ in range(2):
        run(block)
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    promised = re.search(r"print\(store\.model_stats\(\)\)\s+# \[(\{.*?)\.\.\.", block)
    assert promised is not None
    # The comment's fields are those printed (count 1 on every run, not 1, 2, 3, ...).
    for field in promised.group(1).rstrip(", ").split(", "):
        assert field.lstrip("{") in outputs[0]
