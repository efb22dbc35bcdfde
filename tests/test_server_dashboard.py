"""The dashboard end to end: uvicorn on a free loopback port in a thread, Debian's chromium
driven by Playwright, cards checked after some routed requests, screenshot in out/."""

from __future__ import annotations

import math
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the server extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

import modelrouter as mr  # noqa: E402
from modelrouter.server import PREFIX, create_app  # noqa: E402
from modelrouter.testing.asgi_server import serving  # noqa: E402

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)
OUT = Path(__file__).resolve().parent.parent / "out" / "dashboard.png"
NUMBER = re.compile(r"^-?[0-9][0-9,]*(\.[0-9]+)?$")


@pytest.fixture
def server():
    rules = [mr.AlertRule("overload", 0.5, severity="critical")]
    app = create_app(alert_rules=rules, sample_interval_s=0.5, reservation_ttl_s=3600)
    with serving(app) as base:
        yield base


def drive_traffic(base: str) -> None:
    agents = [
        {"id": "coder", "required": {"code": 0.8}, "preferred": {"reasoning": 1.0}},
        {"id": "support", "required": {"chat": 0.6}},
        {"id": "researcher", "required": {"reasoning": 0.8}, "min_context": 65536},
    ]
    with httpx.Client(base_url=base) as c:
        for i in range(60):
            r = c.post(f"{PREFIX}/route", json={"agent": agents[i % 3]})
            assert r.status_code == 200
            feedback = {"model_id": r.json()["model_id"], "latency_ms": 20.0 + (i % 7) * 15}
            c.post(f"{PREFIX}/feedback", json={**feedback, "success": i % 10 != 0})
        # Held reservations: model-B (3 slots) reaches 2/3 utilization, which fires the alert.
        for _ in range(2):
            r = c.post(f"{PREFIX}/route", json={"agent": agents[2], "reserve": True})
            assert r.json()["model_id"] == "model-B"
        # Rejections: an agent no model can serve (409 infeasible).
        for _ in range(3):
            r = c.post(f"{PREFIX}/route", json={"agent": {"id": "x", "required": {"vision": 0.9}}})
            assert r.status_code == 409


def fill_model_b(base: str) -> None:
    """model-B to 3/3 active and 2 queued, then two more refused (503 no capacity)."""
    agent = {"id": "researcher", "required": {"reasoning": 0.8}, "min_context": 65536}
    with httpx.Client(base_url=base) as c:
        codes = [
            c.post(f"{PREFIX}/route", json={"agent": agent, "reserve": True}).status_code
            for _ in range(5)
        ]
    assert codes == [200, 200, 200, 503, 503]


def keep_routing(base: str, stop: threading.Event) -> None:
    """Steady background traffic while the page is open, so the routing rate is live."""
    with httpx.Client(base_url=base) as c:
        while not stop.is_set():
            c.post(f"{PREFIX}/route", json={"agent": {"id": "bg", "required": {"chat": 0.6}}})
            stop.wait(0.02)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_dashboard_shows_live_numbers(server):
    drive_traffic(server)
    stop = threading.Event()
    background = threading.Thread(target=keep_routing, args=(server, stop), daemon=True)
    background.start()
    try:
        check_page(server)
    finally:
        stop.set()
        background.join(timeout=10)
    assert OUT.stat().st_size > 10_000


def check_page(server: str) -> None:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            # bypass_csp: the page's CSP forbids eval, which wait_for_function's predicates use.
            page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server}/?refresh=500")
            page.wait_for_function(
                "document.getElementById('card-alerts').textContent === '1'", timeout=15000
            )
            # A few refreshes so the charts have several points.
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('updated')"
            )
            page.wait_for_function(
                "parseFloat(document.getElementById('card-rate').textContent) > 0"
            )
            page.wait_for_timeout(2500)
            cards = {
                name: page.inner_text(f"#card-{name}")
                for name in ("rate", "rejected", "p99", "success", "util", "alerts")
            }
            for name, text in cards.items():
                assert NUMBER.match(text), f"card {name} shows {text!r}"
            assert float(cards["success"]) == pytest.approx(90.0)
            assert float(cards["p99"].replace(",", "")) >= 100.0
            assert float(cards["util"]) > 0.0
            assert "overload" in page.inner_text("#alerts")
            # Rejections are shown: 3 infeasible so far, then 2 refused for lack of capacity.
            assert page.inner_text("#card-rejected") == "3"
            assert "infeasible 3" in page.inner_text("#card-rejected-unit")
            assert "utilization 0.67 > 0.5" in page.inner_text("#alerts")
            fill_model_b(server)
            page.wait_for_function(
                "document.getElementById('card-rejected').textContent === '5'", timeout=10000
            )
            unit = page.inner_text("#card-rejected-unit")
            assert "no capacity 2, infeasible 3" in unit and unit.startswith("of ")
            # The firing alert shows the utilization now (1.00), not the one it fired with.
            page.wait_for_function(
                "document.getElementById('alerts').textContent.includes('utilization 1.00')",
                timeout=10000,
            )
            assert "since" in page.inner_text("#alerts")
            # Axis ticks are round numbers: multiples of a 1, 2 or 5 × 10^k step from 0.
            for chart in ("chart-latency", "chart-util"):
                ticks = page.get_attribute(f"#{chart}", "data-ticks").replace(",", "").split()
                values = [float(t) for t in ticks]
                step = values[1] - values[0]
                assert values[0] == 0 and len(values) >= 3, (chart, ticks)
                mantissa = step / 10 ** math.floor(math.log10(step))
                assert round(mantissa, 9) in (1, 2, 5), (chart, ticks)
                assert values == pytest.approx([k * step for k in range(len(values))])
            assert page.locator("#models tbody tr").count() == 3
            # Token columns: tokens in flight, and "–" for TPM without a tpm limit.
            assert page.locator("#models thead th").count() == 10
            assert page.locator("#models tbody tr td").nth(9).inner_text() == "–"
            assert "model-B" in page.inner_text("#legend-util")
            assert errors == []
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT), full_page=True)
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_the_routing_rate_is_live_from_the_first_poll(server):
    stop = threading.Event()
    background = threading.Thread(target=keep_routing, args=(server, stop), daemon=True)
    background.start()
    try:
        time.sleep(2.0)  # a few of the service's history samples (every 0.5 s) with traffic
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                # bypass_csp: the page's CSP forbids eval, which wait_for_function's predicate uses.
                page = browser.new_page(bypass_csp=True)
                page.goto(f"{server}/?refresh=600000")  # one poll only
                page.wait_for_function(
                    "document.getElementById('status').textContent.startsWith('updated')"
                )
                rate = page.inner_text("#card-rate")
                assert NUMBER.match(rate) and float(rate.replace(",", "")) > 0, rate
            finally:
                browser.close()
    finally:
        stop.set()
        background.join(timeout=10)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_dashboard_marks_models_that_are_out(server):
    # Five server errors reported through feedback eject the model the agent is routed to.
    agent = {"id": "support", "required": {"chat": 0.6}}
    with httpx.Client(base_url=server) as c:
        routed = set()
        for _ in range(5):
            r = c.post(f"{PREFIX}/route", json={"agent": agent, "reserve": True}).json()
            routed.add(r["model_id"])
            body = {"model_id": r["model_id"], "request_id": r["request_id"],
                    "outcome": "server_error", "success": False}  # fmt: skip
            assert c.post(f"{PREFIX}/feedback", json=body).status_code == 200
        (ejected,) = routed
        states = {m["model_id"]: m["state"] for m in c.get(f"{PREFIX}/health").json()["models"]}
        assert states[ejected] == "ejected"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            # bypass_csp: the page's CSP forbids eval, which wait_for_function's predicates use.
            page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server}/?refresh=500")
            page.wait_for_selector("#models tbody tr.health-ejected", timeout=15000)
            row = page.locator("#models tbody tr.health-ejected")
            assert row.count() == 1
            text = row.inner_text()
            assert ejected in text and "ejected" in text
            assert re.search(r"\(\d+ s\)", text), text  # time left of the ejection
            assert page.locator("#models tbody tr.health-healthy").count() == 2
            assert errors == []
        finally:
            browser.close()
