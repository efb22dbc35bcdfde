"""The dashboard behind API keys, in Debian's chromium (Playwright): the page sends a browser
without the cookie to the login form, an admin key signs in (HttpOnly cookie), the cards then
fill with live numbers, and the Content-Security-Policy is never violated (no inline code, no
third-party request); a non-admin key is turned away."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the server extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import expect  # noqa: E402

from modelrouter.server import PREFIX, create_app  # noqa: E402
from modelrouter.server_auth import COOKIE, parse_api_keys  # noqa: E402
from modelrouter.testing.asgi_server import serving  # noqa: E402

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)
ADMIN = "dash-admin-key-0123456789"
ROUTE = "dash-route-key-0123456789"


@pytest.fixture
def server() -> Iterator[str]:
    keys = parse_api_keys(f"ops admin {ADMIN}\napp route,report {ROUTE}")
    app = create_app(sample_interval_s=0.5, api_keys=keys)
    with serving(app) as base:
        yield base


def traffic(base: str) -> None:
    with httpx.Client(base_url=base, headers={"X-API-Key": ROUTE}) as c:
        for i in range(30):
            r = c.post(f"{PREFIX}/route", json={"agent": {"id": "a", "required": {"code": 0.5}}})
            assert r.status_code == 200, r.text
            body = {"model_id": r.json()["model_id"], "latency_ms": 10.0 + i}
            assert c.post(f"{PREFIX}/feedback", json=body).status_code == 200


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_dashboard_signs_in_with_an_admin_key_under_its_csp(server: str) -> None:
    traffic(server)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "console",
                lambda m: (
                    problems.append(m.text)
                    if m.type in ("error", "warning") and "Failed to load resource" not in m.text
                    else None
                ),
            )
            failed: list[str] = []  # (the browser's own /favicon.ico aside)
            page.on(
                "response",
                lambda r: (
                    failed.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico")
                    else None
                ),
            )
            outside: list[str] = []
            page.on(
                "request",
                lambda r: outside.append(r.url) if not r.url.startswith(server) else None,
            )
            page.goto(f"{server}/?refresh=500")
            assert page.url.startswith(f"{server}/login")  # sent to the form
            page.fill("#key", ROUTE)  # not an admin key: back to the form, told so
            page.click("button[type=submit]")
            page.wait_for_selector(".failed")
            assert page.url.endswith("/login?failed=1")
            page.fill("#key", ADMIN)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server}/")
            # Locator waits only: the page's CSP forbids the eval wait_for_function needs.
            expect(page.locator("#status")).to_have_text(re.compile("^updated"), timeout=15000)
            expect(page.locator("#card-success")).to_have_text("100.0")
            cookies = {c["name"]: c for c in context.cookies()}
            assert cookies[COOKIE]["httpOnly"] and cookies[COOKIE]["sameSite"] == "Strict"
            assert page.evaluate("document.cookie") == ""  # not readable by scripts
            assert problems == [], problems  # CSP violations are console errors
            assert failed == [], failed
            assert outside == []
        finally:
            browser.close()
