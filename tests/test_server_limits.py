"""Input limits as a security property: no request makes the service allocate without bound.
Each bound — body size, number of agents, models and capabilities, id length and characters,
JSON nesting depth, query limits — is answered with a clear 4xx naming what was too big, and
nothing reaches the catch-all 500 handler."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from modelrouter.server import PREFIX, create_app  # noqa: E402
from modelrouter.server_schemas import MAX_AGENTS, MAX_MODELS  # noqa: E402

MODEL = {"id": "m", "capabilities": {"code": 0.9}, "max_concurrent": 100_000}
AGENT = {"id": "a", "required": {"code": 0.5}}


@pytest.fixture(scope="module")
def client():
    app = create_app(sample_interval_s=3600)
    with TestClient(app) as c:
        yield c
    assert app.state.service.unexpected_errors == 0


def batch(agents=None, models=None):
    return {"agents": agents if agents is not None else [AGENT],
            "models": models if models is not None else [MODEL]}  # fmt: skip


def assert_422(r, field_part):
    assert r.status_code == 422, r.text[:500]
    body = r.json()
    assert field_part in body.get("field", "") or field_part in json.dumps(body["detail"])[:2000]
    assert len(r.content) < 20_000  # the answer itself stays small


def test_number_of_agents_and_models(client):
    r = client.post(f"{PREFIX}/auto-assign-all", json=batch(agents=[AGENT] * (MAX_AGENTS + 1)))
    assert_422(r, "agents")
    models = [{**MODEL, "id": f"m{i}"} for i in range(MAX_MODELS + 1)]
    assert_422(client.post(f"{PREFIX}/auto-assign-all", json=batch(models=models)), "models")
    at_limit = [{**MODEL, "id": f"m{i}"} for i in range(MAX_MODELS)]
    assert client.post(f"{PREFIX}/auto-assign-all", json=batch(models=at_limit)).status_code == 200


@pytest.mark.parametrize("where", ["required", "preferred", "capabilities"])
def test_number_of_capabilities(client, where):
    many = {f"c{i}": 0.5 for i in range(257)}
    if where == "capabilities":
        body = batch(models=[{**MODEL, "capabilities": many}])
        assert_422(client.post(f"{PREFIX}/auto-assign-all", json=body), "capabilities")
    else:
        agent = {"id": "a", where: many}
        assert_422(client.post(f"{PREFIX}/route", json={"agent": agent}), where)
        assert_422(client.post(f"{PREFIX}/auto-assign-all", json=batch([agent])), where)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a" * 256, True), ("a" * 257, False), ("", False), ("llama3-70b/ü:v1 @x", True)],
)
def test_id_length(client, value, ok):
    r = client.post(f"{PREFIX}/route", json={"agent": {**AGENT, "id": value}})
    if ok:
        assert r.status_code == 200, r.text
    else:
        assert_422(r, "agent.id")
    r = client.post(f"{PREFIX}/feedback", json={"model_id": value, "latency_ms": 1})
    assert r.status_code == (404 if ok else 422), r.text
    cap = client.post(f"{PREFIX}/route", json={"agent": {"id": "a", "required": {"c" * 129: 0.5}}})
    assert_422(cap, "required")


@pytest.mark.parametrize("char", ["\x00", "\n", "\r", "\x1b", "\x7f", "\x85", "\u2028", "\ud800"])
def test_id_characters(client, char):
    """Control characters, line separators and lone surrogates would forge log lines and
    metric labels or break the store's encoding: refused in every id and capability name."""
    bad = f"ev{char}il"
    raw = json.dumps({"agent": {**AGENT, "id": bad}})  # \\u escapes: valid JSON
    r = client.post(f"{PREFIX}/route", content=raw, headers={"content-type": "application/json"})
    # (pydantic's JSON parser refuses a lone surrogate itself: a 422 naming the body)
    assert_422(r, "body" if char == "\ud800" else "agent.id")
    raw = json.dumps({"agent": {"id": "a", "required": {bad: 0.5}}})
    r = client.post(f"{PREFIX}/route", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    raw = json.dumps({"model_id": bad, "latency_ms": 1})
    r = client.post(f"{PREFIX}/feedback", content=raw, headers={"content-type": "application/json"})
    assert_422(r, "model_id")
    raw = json.dumps(batch(agents=[{**AGENT, "id": bad}]))
    r = client.post(
        f"{PREFIX}/auto-assign-all", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("depth", [64, 5_000, 200_000])
@pytest.mark.parametrize("path", ["route", "feedback", "auto-assign-all"])
def test_json_depth(client, path, depth):
    """However deep the nesting (the schemas need four levels), the answer is a 422: the
    decoders' own depth limits end it (pydantic's at 200 levels, json's recursion limit, the
    batch decoder's), without a 500 or the stack running out."""
    nested = "[" * depth + "]" * depth
    raw = {
        "route": '{"agent": {"id": "a", "required": %s}}',
        "feedback": '{"model_id": %s, "latency_ms": 1}',
        "auto-assign-all": '{"agents": [{"id": "a", "required": {"c": %s}}], "models": []}',
    }[path] % nested
    for chunked in (False, True):
        body = iter([raw.encode()]) if chunked else raw.encode()
        r = client.post(
            f"{PREFIX}/{path}", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, (depth, r.text[:300])
        assert len(r.content) < 20_000
        if depth > 1000:  # beyond what any schema needs: the decoders' own depth limits
            assert "recursion limit" in r.text or "nested too deeply" in r.text, r.text
            assert r.json()["field"] == "body"


def test_query_limits(client):
    for path, top in (("assignments", 1000), ("alerts", 1000), ("history", 10000)):
        assert client.get(f"{PREFIX}/{path}?limit={top}").status_code == 200
        r = client.get(f"{PREFIX}/{path}?limit={top + 1}")
        assert r.status_code == 422 and "limit" in r.text
        assert client.get(f"{PREFIX}/{path}?limit={'9' * 5000}").status_code == 422


def test_body_size_bound_applies_to_every_endpoint():
    with TestClient(create_app(sample_interval_s=3600, max_body_bytes=1000)) as c:
        for path in ("route", "feedback", "auto-assign-all"):
            r = c.post(f"{PREFIX}/{path}", content=b"[" + b" " * 2000 + b"]",
                       headers={"content-type": "application/json"})  # fmt: skip
            assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]
