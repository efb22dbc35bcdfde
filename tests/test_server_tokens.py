"""Token-aware capacity through the REST service: `tokens` on POST route, usage on feedback,
the limits in /stats and the Prometheus gauges."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

import modelrouter as mr  # noqa: E402
from modelrouter.server import PREFIX, create_app  # noqa: E402

AGENT = {"id": "a", "required": {"code": 0.5}}


def _app() -> TestClient:
    fleet = [mr.Model("solo", {"code": 0.9}, max_concurrent=10, tpm=1000, rpm=50)]
    return TestClient(create_app(fleet, sample_interval_s=3600))


def test_route_reserves_tokens_and_feedback_reconciles_usage() -> None:
    with _app() as c:
        body = {"agent": AGENT, "reserve": True, "tokens": 300, "max_output_tokens": 500}
        first = c.post(f"{PREFIX}/route", json=body)
        assert first.status_code == 200, first.text
        solo = c.get(f"{PREFIX}/stats").json()["models"][0]
        assert (solo["tokens_in_flight"], solo["tokens_in_window"], solo["tpm"]) == (800, 800, 1000)
        # 800 of 1,000 held in the window: 300 more wait for it (503 with Retry-After ~60 s).
        second = c.post(f"{PREFIX}/route", json=dict(body, max_output_tokens=0))
        assert second.status_code == 503
        assert 55 <= second.json()["retry_after_s"] <= 60
        rid = first.json()["request_id"]
        usage = {"prompt_tokens": 300, "completion_tokens": 40}
        fb = c.post(f"{PREFIX}/feedback", json={"model_id": "solo", "request_id": rid, **usage})
        assert fb.status_code == 200 and fb.json()["released"]
        solo = c.get(f"{PREFIX}/stats").json()["models"][0]
        assert (solo["tokens_in_flight"], solo["tokens_in_window"]) == (0, 340)
        assert c.post(f"{PREFIX}/route", json=dict(body, max_output_tokens=0)).status_code == 200
        metrics = c.get("/metrics").text
        assert 'modelrouter_tokens_in_window{model="solo"} 640' in metrics
        assert 'modelrouter_quota_usage{model="solo",limit="tpm"} 0.64' in metrics
        assert 'modelrouter_quota_usage{model="solo",limit="rpm"}' in metrics


def test_bad_token_fields_are_422_and_too_big_is_refused_at_once() -> None:
    with _app() as c:
        for bad in (-1, 1.5, "10"):
            r = c.post(f"{PREFIX}/route", json={"agent": AGENT, "tokens": bad})
            assert r.status_code == 422, bad
        r = c.post(f"{PREFIX}/route", json={"agent": AGENT, "tokens": 1001})
        assert r.status_code in (400, 422), r.text
        assert "tpm" in r.text


def test_feedback_ttft_teaches_the_model_and_stats_show_it() -> None:
    with _app() as c:
        solo = c.get(f"{PREFIX}/stats").json()["models"][0]
        assert (solo["ttft_ms"], solo["ms_per_output_token"]) == (None, None)
        for bad in (-1, "12", 2e9):
            r = c.post(
                f"{PREFIX}/feedback", json={"model_id": "solo", "latency_ms": 1, "ttft_ms": bad}
            )
            assert r.status_code == 422 and "ttft_ms" in r.text, (bad, r.text)
        rid = c.post(f"{PREFIX}/route", json={"agent": AGENT, "reserve": True}).json()["request_id"]
        body = {"model_id": "solo", "request_id": rid, "ttft_ms": 123.5, "completion_tokens": 40}
        assert c.post(f"{PREFIX}/feedback", json=body).status_code == 200
        solo = c.get(f"{PREFIX}/stats").json()["models"][0]
        assert solo["ttft_ms"] == 123.5
        assert c.app.state.service.router.token_timing("solo")[0] == 123.5  # type: ignore[attr-defined]
