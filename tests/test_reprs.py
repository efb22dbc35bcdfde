"""Reprs read like Python (quotes, dicts, True/None, floats as ``repr(float)``), the ones of
value classes evaluate back to an equal object, and the classes a notebook user looks at
render as HTML tables."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st

import modelrouter as mr


def test_model_and_agent_reprs_are_the_calls_that_build_them():
    m = mr.Model("llama3-70b", {"code": 0.9, "reasoning": 0.85}, max_queue=5)
    assert repr(m) == (
        "Model('llama3-70b', capabilities={'code': 0.9, 'reasoning': 0.85}, "
        "context_window=8192, max_concurrent=10, max_queue=5, target_utilization=0.8, "
        "cost_per_1k_tokens=0.0)"
    )
    a = mr.Agent("coder", required={"code": 0.7}, min_context=4096)
    assert repr(a) == "Agent('coder', required={'code': 0.7}, preferred={}, min_context=4096)"
    assert repr(mr.ScoreWeights()) == (
        "ScoreWeights(required=0.6, preferred=0.3, context=0.1, cost=0.0)"
    )


names = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() != "")
levels = st.dictionaries(names, st.floats(0, 1, allow_nan=False), max_size=4)


@given(
    id=names,
    caps=levels,
    context=st.integers(1, 10**9),
    conc=st.integers(1, 10**6),
    queue=st.integers(0, 10**6),
    target=st.floats(0.01, 1.0),
    price=st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
)
def test_a_model_repr_evaluates_back_to_an_equal_model(
    id, caps, context, conc, queue, target, price
):
    m = mr.Model(
        id,
        caps,
        context_window=context,
        max_concurrent=conc,
        max_queue=queue,
        target_utilization=target,
        cost_per_1k_tokens=price,
    )
    assert eval(repr(m), {"Model": mr.Model}) == m


@given(
    id=names,
    required=st.dictionaries(names, st.floats(0.01, 1), max_size=4),
    preferred=st.dictionaries(names, st.floats(0.01, 10), max_size=4),
)
def test_an_agent_repr_evaluates_back_to_an_equal_agent(id, required, preferred):
    a = mr.Agent(id, required=required, preferred=preferred)
    assert eval(repr(a), {"Agent": mr.Agent}) == a


@given(st.floats(min_value=0, allow_infinity=False, allow_nan=False))
def test_float_fields_are_written_as_python_writes_them(x):
    # Any finite weight >= 0 (1e-07, 1e+16, 5e-324 ...) is spelled as repr(float) spells it.
    w = mr.ScoreWeights(required=x)
    assert repr(w).startswith(f"ScoreWeights(required={x!r}, ")


def test_trackers_and_results_print_python_values():
    assert repr(mr.PerformanceTracker(window_s=300)) == (
        "PerformanceTracker(models=0, agents=0, window_s=300.0)"
    )
    assert repr(mr.PerformanceTracker()) == "PerformanceTracker(models=0, agents=0, window_s=None)"
    models = [mr.Model("a", {"code": 0.9}, max_concurrent=1)]
    router = mr.Router(models)
    assert repr(router) == (
        "Router(models=1, strategy='optimal', load_balancing=True, load_weight=0.5)"
    )
    result = router.assign([mr.Agent("x", {"code": 0.5}), mr.Agent("y", {"code": 0.5})])
    placed = result.assignments[0]
    assert repr(placed) == (
        f"Assignment(agent_id='{placed.agent_id}', model_id='a', score={placed.score!r})"
    )
    assert repr(result) == (
        f"AssignmentResult(strategy_used='optimal', assigned=1, "
        f"unassigned={result.unassigned!r}, total_score={result.total_score!r})"
    )
    with router.track("a") as t:
        assert repr(t) == "InFlight('a', state='in flight')"
    assert repr(router.load_tracker.current_load("a")) == (
        "ModelLoad('a', active_requests=0, queue_depth=0, utilization=0.0)"
    )
    assert repr(mr.AlertRule("high_latency", 2000, severity="error", for_s=60)) == (
        "AlertRule('high_latency', 2000.0, severity='error', for_s=60.0, model_id=None)"
    )
    assert repr(mr.AdaptiveScorer((0.5, 0.3, 0.2))) == (
        "AdaptiveScorer(weights=(0.5, 0.3, 0.2), half_life_s=30.0)"
    )
    empty = mr.PerformanceTracker().fleet_stats()
    assert repr(empty) == "Stats(count=0, success_rate=None, p50_ms=None, p95_ms=None, p99_ms=None)"


class Table(HTMLParser):
    """The cells of an HTML table, and whether the markup is a table at all."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def table(html: str) -> Table:
    t = Table()
    t.feed(html)
    assert "table" in t.tags and "thead" in t.tags and "tbody" in t.tags, html
    return t


def test_notebook_classes_render_as_html_tables_with_escaped_cells():
    m = mr.Model("<b>m</b>", {"code": 0.9})
    rows = table(m._repr_html_()).rows
    assert rows[0][:2] == ["model", "capabilities"]
    assert rows[1][:3] == ["<b>m</b>", "code 0.9", "8192"]  # the id is text, not markup
    assert "<b>" not in m._repr_html_()

    a = mr.Agent("coder", required={"code": 0.7}, preferred={"chat": 2.0})
    assert table(a._repr_html_()).rows == [
        ["agent", "required", "preferred", "min context"],
        ["coder", "code 0.7", "chat 2.0", "0"],
    ]

    router = mr.Router([mr.Model("a", {"code": 0.9}, max_concurrent=1)])
    result = router.assign([mr.Agent("x", {"code": 0.5}), mr.Agent("y", {"code": 0.5})])
    html = result._repr_html_()
    rows = table(html).rows
    assert rows[0] == ["agent", "model", "score"]
    placed = result.assignments[0]
    assert rows[1] == [placed.agent_id, "a", f"{placed.score:.4f}"]
    assert rows[2] == [result.unassigned[0], "–", "–"]
    assert re.search(r"optimal — 1 assigned, 1 unassigned", html)

    report = mr.simulate("heterogeneous", policies=["least_loaded"], requests=500, seed=3)
    r = report.results["least_loaded"]
    rows = table(r._repr_html_()).rows
    assert rows[0][0] == "policy" and rows[1][0] == "least_loaded"
    assert rows[1][5] == f"{r.completed:,}"
    # The report's table has the same row for that run.
    assert rows[1] in table(report._repr_html_()).rows
