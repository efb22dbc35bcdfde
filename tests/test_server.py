"""The REST service in-process (FastAPI TestClient): every endpoint, the error mapping, 422s
naming fields, the Prometheus text parsed line by line, and the seed bodies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

import modelrouter as mr  # noqa: E402
from modelrouter.server import PREFIX, create_app  # noqa: E402
from modelrouter.store import StoreError, open_store  # noqa: E402
from modelrouter.types import SCENARIO_DIR  # noqa: E402

SEED = json.loads((SCENARIO_DIR / "seed_assign.json").read_text())
CODER = {"id": "coder", "required": {"code": 0.8}, "preferred": {"reasoning": 1.0},
         "min_context": 8192}  # fmt: skip


def tiny_fleet(**kw):
    return [mr.Model("solo", {"code": 0.9}, max_concurrent=1, max_queue=0, **kw)]


@pytest.fixture
def client():
    with TestClient(create_app(sample_interval_s=3600)) as c:
        yield c


def locs(response):
    return [tuple(e["loc"]) for e in response.json()["detail"]]


def test_seed_auto_assign_all_body(client):
    body = {**{k: SEED[k] for k in ("agents", "models")}, "strategy": "optimal",
            "enable_load_balancing": True}  # fmt: skip
    r = client.post(f"{PREFIX}/auto-assign-all", json=body)
    assert r.status_code == 200
    got = r.json()
    placed = {a["agent_id"]: a["model_id"] for a in got["assignments"]}
    assert placed == {"coder": "model-A", "researcher": "model-B", "support": "model-C",
                      "reviewer": "model-B", "summarizer": "model-C"}  # fmt: skip
    assert set(got) == {"assignments", "total_score", "strategy_used", "load_balancing_enabled",
                        "models_filtered", "avg_utilization", "unassigned"}  # fmt: skip
    assert got["strategy_used"] == "optimal" and got["load_balancing_enabled"] is True
    assert got["total_score"] == pytest.approx(sum(a["score"] for a in got["assignments"]))
    assert got["unassigned"] == [] and got["models_filtered"] == 0


@pytest.mark.parametrize("strategy", ["greedy", "balanced", "optimal"])
def test_auto_assign_matches_library(client, strategy):
    body = {"agents": SEED["agents"], "models": SEED["models"], "strategy": strategy,
            "enable_load_balancing": False}  # fmt: skip
    got = client.post(f"{PREFIX}/auto-assign-all", json=body).json()
    agents = mr.types.agents_from_dicts(SEED["agents"])
    models = mr.types.models_from_dicts(SEED["models"])
    want = mr.Router(models, strategy=strategy, load_balancing=False).assign(agents).to_dict()
    assert got == json.loads(json.dumps(want))


def test_assignments_lists_recent_calls_newest_first(client):
    for strategy in ("greedy", "optimal"):
        body = {"agents": SEED["agents"][:2], "models": SEED["models"], "strategy": strategy}
        assert client.post(f"{PREFIX}/auto-assign-all", json=body).status_code == 200
    rows = client.get(f"{PREFIX}/assignments", params={"limit": 5}).json()["assignments"]
    assert [r["response"]["strategy_used"] for r in rows] == ["optimal", "greedy"]
    # Without a store only a summary of each call is kept (the store keeps the bodies).
    assert rows[0]["request"]["n_agents"] == 2 and rows[0]["response"]["n_assigned"] == 2


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"models": SEED["models"]}, ("body", "agents")),
        ({"agents": [], "models": []}, ("body", "models")),
        ({"agents": [], "models": [{"id": "m", "capabilities": {"code": 1.5}}]},
         ("body", "models", 0, "capabilities", "code")),
        ({"agents": [], "models": [{"id": "m", "max_concurrent": 0}]},
         ("body", "models", 0, "max_concurrent")),
        ({"agents": [{"id": "a", "colour": 1}], "models": [{"id": "m"}]},
         ("body", "agents", 0, "colour")),
        ({"agents": [], "models": [{"id": "m"}], "strategy": "random"}, ("body", "strategy")),
        ({"agents": [{"id": ""}], "models": [{"id": "m"}]}, ("body", "agents", 0, "id")),
    ],
)  # fmt: skip
def test_validation_errors_name_the_field(client, body, loc):
    r = client.post(f"{PREFIX}/auto-assign-all", json=body)
    assert r.status_code == 422
    assert loc in locs(r)


def test_core_validation_is_a_422_naming_the_field(client):
    # Duplicate ids pass pydantic; the Rust core rejects them with field "models".
    body = {"agents": [], "models": [{"id": "m"}, {"id": "m"}]}
    r = client.post(f"{PREFIX}/auto-assign-all", json=body)
    assert r.status_code == 422
    assert r.json()["field"] == "models" and ("body", "models") in locs(r)


def test_non_finite_numbers_are_422_not_500(client):
    raw = b'{"agent": {"id": "a", "preferred": {"code": NaN}}}'
    r = client.post(f"{PREFIX}/route", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert ("body", "agent", "preferred", "code") in locs(r)


def test_route_and_stats(client):
    r = client.post(f"{PREFIX}/route", json={"agent": CODER})
    assert r.status_code == 200
    assert r.json() == {"agent_id": "coder", "model_id": "model-A", "policy": "weighted",
                        "queued": False, "request_id": None}  # fmt: skip
    stats = client.get(f"{PREFIX}/stats").json()
    assert stats["routes"]["routed"] == 1 and stats["routes"]["total"] == 1
    by_model = {m["model_id"]: m for m in stats["models"]}
    assert by_model["model-A"]["routed"] == 1 and by_model["model-A"]["active"] == 0


def test_route_infeasible_is_409(client):
    r = client.post(f"{PREFIX}/route", json={"agent": {"id": "x", "required": {"poetry": 0.9}}})
    assert r.status_code == 409
    assert r.json()["error"] == "InfeasibleError"
    assert client.get(f"{PREFIX}/stats").json()["routes"]["infeasible"] == 1


def test_no_capacity_is_503_with_retry_after():
    with TestClient(create_app(tiny_fleet(), sample_interval_s=3600)) as c:
        body = {"agent": {"id": "a", "required": {"code": 0.5}}, "reserve": True}
        first = c.post(f"{PREFIX}/route", json=body)
        assert first.status_code == 200 and first.json()["request_id"]
        second = c.post(f"{PREFIX}/route", json=body)
        assert second.status_code == 503
        assert int(second.headers["Retry-After"]) >= 1
        assert second.json()["error"] == "NoCapacityError"
        assert second.json()["retry_after_s"] > 0
        # Feedback frees the slot, so the next request fits again.
        rid = first.json()["request_id"]
        fb = c.post(f"{PREFIX}/feedback", json={"model_id": "solo", "request_id": rid})
        assert fb.status_code == 200 and fb.json()["released"] is True
        assert c.post(f"{PREFIX}/route", json=body).status_code == 200


def test_reservation_shows_as_active_load():
    with TestClient(create_app(tiny_fleet(), sample_interval_s=3600)) as c:
        body = {"agent": {"id": "a", "required": {"code": 0.5}}, "reserve": True}
        rid = c.post(f"{PREFIX}/route", json=body).json()["request_id"]
        model = c.get(f"{PREFIX}/stats").json()["models"][0]
        assert (model["active"], model["utilization"]) == (1, 1.0)
        c.post(f"{PREFIX}/feedback", json={"model_id": "solo", "request_id": rid})
        model = c.get(f"{PREFIX}/stats").json()["models"][0]
        assert (model["active"], model["stats"]["count"]) == (0, 1)


def test_feedback_records_latency_and_success(client):
    for latency, ok in ((10.0, True), (30.0, True), (50.0, False)):
        body = {"model_id": "model-B", "latency_ms": latency, "success": ok, "agent_id": "x"}
        r = client.post(f"{PREFIX}/feedback", json=body)
        assert r.status_code == 200 and r.json()["released"] is False
    stats = client.get(f"{PREFIX}/stats").json()
    assert stats["feedback"] == {"total": 3, "success": 2, "failure": 1}
    assert stats["overall"]["success_rate"] == pytest.approx(2 / 3)
    b = next(m for m in stats["models"] if m["model_id"] == "model-B")
    assert b["stats"]["count"] == 3 and b["stats"]["max_ms"] == pytest.approx(50.0, rel=1e-2)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model_id": "nope", "latency_ms": 1.0}, 404, None),
        ({"model_id": "model-A"}, 422, "latency_ms"),
        ({"model_id": "model-A", "latency_ms": -1.0}, 422, "latency_ms"),
        ({"model_id": "model-A", "request_id": "never-issued"}, 404, "request_id"),
    ],
)
def test_feedback_errors(client, body, status, field):
    r = client.post(f"{PREFIX}/feedback", json=body)
    assert r.status_code == status
    if status == 422:
        assert ("body", field) in locs(r)
    elif field:
        assert r.json()["field"] == field


def test_expired_reservations_free_their_slot():
    app = create_app(tiny_fleet(), sample_interval_s=3600, reservation_ttl_s=0.0)
    with TestClient(app) as c:
        body = {"agent": {"id": "a", "required": {"code": 0.5}}, "reserve": True}
        assert c.post(f"{PREFIX}/route", json=body).status_code == 200
        assert app.state.service.expire_reservations() == 1
        stats = c.get(f"{PREFIX}/stats").json()
        assert stats["reservations"] == 0 and stats["models"][0]["active"] == 0
        assert stats["feedback"]["failure"] == 1


def test_health_openapi_and_dashboard(client):
    health = client.get("/health").json()
    assert health == {"status": "ok", "version": mr.__version__, "models": 3, "store": False}
    spec = client.get("/openapi.json").json()
    for path in ("auto-assign-all", "assignments", "stats", "alerts", "route", "feedback"):
        assert f"{PREFIX}/{path}" in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert {"AutoAssignRequest", "AutoAssignResponse", "RouteRequest", "FeedbackRequest"} <= set(
        schemas
    )
    page = client.get("/")
    assert page.status_code == 200 and 'id="card-p99"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_unexpected_exceptions_are_500_logged_and_counted(caplog):
    app = create_app(sample_interval_s=3600)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("a bug with secret internals")

    with caplog.at_level("ERROR", logger="modelrouter.server"):
        with TestClient(app, raise_server_exceptions=False) as c:
            r = c.get("/boom")
    # A fault of the service is a 5xx, never dressed up as the client's error.
    assert r.status_code == 500 and r.json()["error"] == "InternalError"
    assert "secret internals" not in r.text
    assert app.state.service.unexpected_errors == 1
    assert any(
        rec.exc_info and "secret internals" in str(rec.exc_info[1]) for rec in caplog.records
    )


class RecordingStore:
    """Enough of the DecisionStore protocol to see what the service hands it."""

    def __init__(self):
        self.calls, self.closed = [], 0

    def __getattr__(self, name):
        return lambda *a, **kw: self.calls.append((name, a, kw))

    def assignments(self, limit=100):
        return []

    def close(self):
        self.closed += 1


def test_store_receives_every_decision_and_is_closed_on_shutdown():
    store = RecordingStore()
    with TestClient(create_app(store=store, sample_interval_s=3600)) as c:
        c.post(f"{PREFIX}/route", json={"agent": CODER})
        c.post(f"{PREFIX}/route", json={"agent": {"id": "x", "required": {"poetry": 0.9}}})
        c.post(f"{PREFIX}/feedback", json={"model_id": "model-A", "latency_ms": 5.0})
        body = {"agents": SEED["agents"], "models": SEED["models"]}
        c.post(f"{PREFIX}/auto-assign-all", json=body)
        assert store.closed == 0
    names = [n for n, _, _ in store.calls]
    assert names.count("record_route") == 2 and names.count("record_feedback") == 1
    assert names.count("record_assignment") == 1 and "record_utilization" in names
    outcomes = [kw.get("outcome", "routed") for n, _, kw in store.calls if n == "record_route"]
    assert outcomes == ["routed", "infeasible"]
    assert store.closed == 1


def test_with_the_sqlite_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    with TestClient(create_app(store_url=url, sample_interval_s=3600)) as c:
        body = {"agents": SEED["agents"], "models": SEED["models"], "strategy": "greedy"}
        c.post(f"{PREFIX}/auto-assign-all", json=body)
        c.post(f"{PREFIX}/route", json={"agent": CODER})
        rows = c.get(f"{PREFIX}/assignments").json()["assignments"]
        assert [r["response"]["strategy_used"] for r in rows] == ["greedy"]
    store = open_store(url)
    try:
        assert [r["model_id"] for r in store.routes()] == ["model-A"]
    finally:
        store.close()


def test_cli_serve_builds_the_app(monkeypatch):
    import uvicorn

    from modelrouter import cli

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert cli.main(["serve", "--port", "8099", "--no-store", "--policy", "least_loaded"]) == 0
    assert seen["port"] == 8099 and seen["host"] == "127.0.0.1"
    assert seen["app"].state.service.policy == "least_loaded"
    assert seen["app"].state.service.store is None


ROUTE_BODIES = [
    {"agent": CODER},
    {"agent": CODER, "reserve": True},
    {"agent": {"id": "x", "required": {"poetry": 0.9}}},
    {"agent": {"id": "x", "required": {"code": 1.5}}},
    {"agent": {"id": ""}},
    {"agent": {"id": "x"}, "colour": "blue"},
    {"agent": {"id": "x", "min_context": -1}},
    [],
]


@pytest.mark.parametrize("body", ROUTE_BODIES)
def test_fast_route_path_answers_like_fastapi(body, monkeypatch):
    """Small JSON bodies are answered by the FastRoute middleware, chunked ones by FastAPI's
    endpoint: both must give the same status and body."""
    from modelrouter.server_fast import FastRoute

    taken = []
    original = FastRoute.answer
    monkeypatch.setattr(
        FastRoute, "answer", lambda self, raw: taken.append(1) or original(self, raw)
    )
    raw = json.dumps(body).encode()
    answers = []
    for chunked in (False, True):
        with TestClient(create_app(sample_interval_s=3600)) as c:
            content = iter([raw]) if chunked else raw
            r = c.post(
                f"{PREFIX}/route", content=content, headers={"content-type": "application/json"}
            )
            got = r.json()
            if r.status_code == 422:  # pydantic words some messages differently per entry point
                got = [(e["loc"], e["type"].replace("model_attributes_type", "model_type"))
                       for e in got["detail"]]  # fmt: skip
            answers.append((r.status_code, got))
    assert taken == [1], "the small JSON body should take the fast path exactly once"
    assert answers[0] == answers[1]
    assert answers[0][0] in (200, 409, 422)


def test_fast_route_path_rejects_bad_json_with_422(client):
    raw = b'{"agent": {"id": '
    r = client.post(f"{PREFIX}/route", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


def test_cli_serve_without_the_extra_says_what_to_install(monkeypatch, capsys):
    import sys

    from modelrouter import cli

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    assert cli.main(["serve", "--no-store"]) == 2
    assert "pip install 'modelrouter[server]'" in capsys.readouterr().err


def test_app_from_env(monkeypatch, tmp_path):
    from modelrouter.server import app_from_env

    monkeypatch.setenv("MODELROUTER_POLICY", "least_loaded")
    monkeypatch.setenv("MODELROUTER_STORE", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("MODELROUTER_FLEET", "seed_assign")
    app = app_from_env()
    with TestClient(app) as c:
        assert c.get("/health").json()["store"] is True
        assert c.post(f"{PREFIX}/route", json={"agent": CODER}).json()["policy"] == "least_loaded"


@pytest.mark.parametrize("chunked", [False, True])
def test_an_id_the_store_refuses_is_a_422_before_any_slot_is_taken(tmp_path, chunked):
    """A NUL in the agent id used to pass validation, reserve the only slot, then fail in the
    store: a 422 without request_id and a slot held for the reservation TTL. Now the body is
    refused first, naming the JSON path, and nothing is reserved or recorded."""
    url = f"sqlite:///{tmp_path / 'nul.db'}"
    app = create_app(tiny_fleet(), store_url=url, sample_interval_s=3600)
    bad = json.dumps({"agent": {"id": "x\u0000y", "required": {"code": 0.5}}, "reserve": True})
    good = {"agent": {"id": "a", "required": {"code": 0.5}}, "reserve": True}
    headers = {"content-type": "application/json"}
    with TestClient(app) as c:
        content = iter([bad.encode()]) if chunked else bad.encode()
        r = c.post(f"{PREFIX}/route", content=content, headers=headers)
        assert r.status_code == 422, r.text
        stats = c.get(f"{PREFIX}/stats").json()
        assert (stats["reservations"], stats["models"][0]["active"]) == (0, 0)
        # The only slot is still free: the next valid reservation gets it.
        ok = c.post(f"{PREFIX}/route", json=good)
        assert ok.status_code == 200 and ok.json()["request_id"]
        assert ("body", "agent", "id") in locs(r) and r.json()["field"] == "agent.id"
        assert app.state.service.unexpected_errors == 0
    with open_store(url) as s:
        assert [r["agent_id"] for r in s.routes()] == ["a"]


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("feedback", {"model_id": "solo", "latency_ms": 1.0, "agent_id": "a\u0000"},
         ("body", "agent_id")),
        ("feedback", {"model_id": "so\u0000lo", "latency_ms": 1.0}, ("body", "model_id")),
        ("auto-assign-all", {"agents": [{"id": "a\u0000"}], "models": [{"id": "m"}]},
         ("body", "agents", 0, "id")),
        ("auto-assign-all", {"agents": [], "models": [{"id": "m", "capabilities": {"c\u0000": 1}}]},
         ("body", "models", 0, "capabilities", "c\u0000", "[key]")),
    ],
)  # fmt: skip
def test_strings_the_store_refuses_are_422s_naming_the_path(tmp_path, path, body, loc):
    url = f"sqlite:///{tmp_path / 'nul.db'}"
    app = create_app(tiny_fleet(), store_url=url, sample_interval_s=3600)
    with TestClient(app) as c:
        r = c.post(f"{PREFIX}/{path}", json=body)
        assert r.status_code == 422, r.text
        assert loc in locs(r)


def test_a_store_failure_after_reserving_gives_the_slot_back():
    class FailingStore(RecordingStore):
        def record_route(self, *a, **kw):
            raise StoreError("database gone")

    with TestClient(create_app(tiny_fleet(), store=FailingStore(), sample_interval_s=3600)) as c:
        body = {"agent": {"id": "a", "required": {"code": 0.5}}, "reserve": True}
        r = c.post(f"{PREFIX}/route", json=body)
        assert r.status_code == 503 and r.json()["error"] == "StoreError"
        stats = c.get(f"{PREFIX}/stats").json()
        assert (stats["reservations"], stats["models"][0]["active"]) == (0, 0)
        assert stats["routes"]["total"] == 0  # nothing was acknowledged


def _agents(n, caps=8):
    names = [f"capability-{k}" for k in range(caps)]
    return [{"id": f"agent-{i:05d}", "required": {c: 0.1 for c in names[: caps // 2]},
             "preferred": {c: 1.0 for c in names[caps // 2 :]}, "min_context": 1024}
            for i in range(n)]  # fmt: skip


def _models(n, caps=8, slots=1000):
    names = [f"capability-{k}" for k in range(caps)]
    return [{"id": f"model-{j}", "capabilities": {c: 0.9 for c in names},
             "max_concurrent": slots} for j in range(n)]  # fmt: skip


def test_a_10000_agent_batch_fits_the_default_body_limit():
    body = {"agents": _agents(10_000), "models": _models(12)}
    raw = json.dumps(body).encode()
    with TestClient(create_app(sample_interval_s=3600)) as c:
        r = c.post(f"{PREFIX}/auto-assign-all", content=raw,
                   headers={"content-type": "application/json"})  # fmt: skip
        assert r.status_code == 200, r.text[:300]
        assert len(r.json()["assignments"]) == 10_000
    from modelrouter.server import DEFAULT_MAX_BODY_BYTES

    assert len(raw) < DEFAULT_MAX_BODY_BYTES / 4  # room for much richer profiles than these


@pytest.mark.parametrize("path", ["auto-assign-all", "route", "feedback"])
@pytest.mark.parametrize("chunked", [False, True])
def test_bodies_over_the_limit_are_413_naming_the_limit(path, chunked):
    app = create_app(sample_interval_s=3600, max_body_bytes=4096)
    small = {"agents": _agents(2), "models": _models(1)}
    raw = json.dumps({"agents": _agents(100), "models": _models(1)}).encode()
    assert len(raw) > 4096
    with TestClient(app) as c:
        content = iter([raw[i : i + 1000] for i in range(0, len(raw), 1000)]) if chunked else raw
        r = c.post(f"{PREFIX}/{path}", content=content,
                   headers={"content-type": "application/json"})  # fmt: skip
        assert r.status_code == 413, r.text[:300]
        assert "4096 bytes" in r.json()["detail"] and r.json()["limit_bytes"] == 4096
        # A body under the limit still goes through.
        assert c.post(f"{PREFIX}/auto-assign-all", json=small).status_code == 200
        assert app.state.service.unexpected_errors == 0


def test_body_limit_from_the_cli_and_the_environment(monkeypatch, capsys):
    import uvicorn

    from modelrouter import cli
    from modelrouter.server import app_from_env

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert cli.main(["serve", "--no-store", "--max-body-bytes", "1000"]) == 0
    with TestClient(seen["app"]) as c:
        r = c.post(f"{PREFIX}/auto-assign-all", json={"agents": _agents(20), "models": []})
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]
    monkeypatch.setenv("MODELROUTER_MAX_BODY_BYTES", "2000")
    assert cli.main(["serve", "--no-store"]) == 0
    monkeypatch.setenv("MODELROUTER_STORE", "")
    for app in (seen["app"], app_from_env()):
        with TestClient(app) as c:
            r = c.post(f"{PREFIX}/auto-assign-all", json={"agents": _agents(20), "models": []})
            assert r.status_code == 413 and "2000 bytes" in r.json()["detail"]
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "--max-body-bytes" in capsys.readouterr().out


def test_recent_assignments_keep_a_summary_not_the_bodies():
    app = create_app(sample_interval_s=3600)
    body = {"agents": _agents(2000), "models": _models(3), "strategy": "greedy"}
    with TestClient(app) as c:
        for _ in range(3):
            assert c.post(f"{PREFIX}/auto-assign-all", json=body).status_code == 200
        rows = c.get(f"{PREFIX}/assignments").json()["assignments"]
    kept = list(app.state.service.recent_assignments)
    assert len(kept) == 3
    for entry in kept:
        assert len(json.dumps(entry)) < 1000 < len(json.dumps(body)) / 100
        assert entry["request"]["n_agents"] == 2000 and entry["request"]["n_models"] == 3
        assert entry["response"]["n_assigned"] == 2000
        assert entry["response"]["strategy_used"] == "greedy"
    assert [r["request"] for r in rows] == [e["request"] for e in kept]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@given(value=JSON_VALUES, indent=st.sampled_from([None, 0, 2]))
def test_piecewise_json_decoding_equals_json_loads(value, indent):
    from modelrouter.server_batch import decode_json

    raw = json.dumps(value, indent=indent).encode()
    assert decode_json(raw) == json.loads(raw)


@given(raw=st.binary(max_size=40) | st.text(alphabet='{}[],:"0a \\n', max_size=30).map(str.encode))
def test_piecewise_json_decoding_refuses_what_json_loads_refuses(raw):
    from modelrouter.server_batch import BodyError, decode_json

    try:
        want = json.loads(raw.decode("utf-8"))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        with pytest.raises(BodyError):
            decode_json(raw)
    else:
        assert decode_json(raw) == want


def _refusals(c, app):
    """Each decision endpoint's answer, and what the service holds afterwards."""
    route = {"agent": {"id": "a", "required": {"code": 0.5}}, "reserve": True}
    answers = [
        c.post(f"{PREFIX}/route", json=route),
        c.post(f"{PREFIX}/route", content=iter([json.dumps(route).encode()]),
               headers={"content-type": "application/json"}),
        c.post(f"{PREFIX}/feedback", json={"model_id": "solo", "latency_ms": 1.0}),
        c.post(f"{PREFIX}/auto-assign-all", json={"agents": _agents(2), "models": _models(1)}),
    ]  # fmt: skip
    stats = c.get(f"{PREFIX}/stats").json()
    return answers, stats


def test_after_sigterm_no_decision_is_acknowledged():
    """Draining (what SIGTERM/SIGINT switch on under uvicorn): every decision endpoint answers
    503 with Retry-After and Connection: close, and nothing is reserved or recorded."""
    store = RecordingStore()
    app = create_app(tiny_fleet(), store=store, sample_interval_s=3600)
    with TestClient(app) as c:
        app.state.service.draining = True
        answers, stats = _refusals(c, app)
        calls = [
            n for n, _, _ in store.calls if n.startswith("record_") and n != "record_utilization"
        ]
        assert c.get("/health").status_code == 200  # reads still work while draining
    for r in answers:
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) >= 1 and r.headers["Connection"] == "close"
        assert r.json()["error"] == "ServiceUnavailableError"
    assert (stats["reservations"], stats["routes"]["total"], stats["feedback"]["total"]) == (
        0,
        0,
        0,
    )
    assert calls == [] and app.state.service.unexpected_errors == 0


def test_a_full_store_queue_is_a_503_not_a_blocked_event_loop(tmp_path):
    """With the store's queue full, acknowledging a decision would block the event loop until
    the writer makes room (and grow what a kill can lose): the service answers 503 instead,
    having reserved nothing."""
    store = open_store(f"sqlite:///{tmp_path / 'full.db'}", max_queue=5)
    app = create_app(tiny_fleet(), store=store, sample_interval_s=3600)
    with TestClient(app) as c:
        store.room = lambda: 0  # the writer is behind: no room in the queue
        answers, stats = _refusals(c, app)
        del store.room
        assert c.post(f"{PREFIX}/route", json={"agent": CODER_SOLO}).status_code == 200
    for r in answers:
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, r.text
        assert "not keeping up" in r.json()["detail"]
    assert (stats["reservations"], stats["routes"]["total"], stats["feedback"]["total"]) == (
        0,
        0,
        0,
    )
    with open_store(f"sqlite:///{tmp_path / 'full.db'}") as s:
        assert [r["agent_id"] for r in s.routes()] == ["solo-agent"]


CODER_SOLO = {"id": "solo-agent", "required": {"code": 0.5}}


def test_drain_handlers_chain_to_the_previous_handler_and_restore_it():
    import os
    import signal

    from modelrouter.server import install_drain_handlers

    app = create_app(tiny_fleet(), sample_interval_s=3600)
    state = app.state.service
    seen = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(state.draining))
    try:
        restore = install_drain_handlers(state)
        assert not state.draining
        os.kill(os.getpid(), signal.SIGTERM)  # Python handlers run on the main thread, at once
        assert state.draining and seen == [True]  # draining first, then the previous handler
        restore()
        previous = signal.getsignal(signal.SIGTERM)
        state.draining = False
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [True, False] and not state.draining  # ours is gone
        assert previous is not None and previous is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, original)
