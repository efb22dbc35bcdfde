"""Schemathesis against the service's own OpenAPI document, in-process through its ASGI
integration: whatever the generated request, the answer is never a server error and no
exception reaches the catch-all handler. The one 5xx allowed is the documented 503 of a full
fleet (NoCapacityError, with Retry-After)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

from hypothesis import HealthCheck, settings  # noqa: E402

import modelrouter as mr  # noqa: E402
from modelrouter.server import create_app  # noqa: E402
from modelrouter.server_auth import parse_api_keys  # noqa: E402

# A small fleet with little capacity, so reserving routes also reach the 503 path.
FLEET = [
    mr.Model("m-code", {"code": 0.9, "reasoning": 0.6}, max_concurrent=2, max_queue=1),
    mr.Model("m-chat", {"chat": 0.8}, context_window=32768, max_concurrent=1),
]
APP = create_app(FLEET, sample_interval_s=3600, reservation_ttl_s=3600)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call()
    where = (case.method, case.path, response.text)
    if response.status_code == 503:
        assert response.json()["error"] == "NoCapacityError", where
        assert int(response.headers["retry-after"][0]) >= 1, where
    else:
        assert response.status_code < 500, where
    assert APP.state.service.unexpected_errors == 0, "an exception reached the catch-all"


# The same fuzzing with API keys: an admin key reaches every operation and never a 5xx but the
# documented 503; no key is answered 401, whatever the request.
KEYS = parse_api_keys("ops admin fuzz-admin-key-0123456789")
ADMIN_HEADERS = {"Authorization": "Bearer fuzz-admin-key-0123456789",
                 "X-API-Key": "fuzz-admin-key-0123456789"}  # fmt: skip
KEYED_APP = create_app(FLEET, sample_interval_s=3600, reservation_ttl_s=3600, api_keys=KEYS)
keyed_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", KEYED_APP, headers={"X-API-Key": "fuzz-admin-key-0123456789"}
)


@keyed_schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_key_no_server_errors(case):
    # (schemathesis may generate the documented auth headers itself: both get the valid key)
    case.headers = {**(case.headers or {}), **ADMIN_HEADERS}
    response = case.call()
    where = (case.method, case.path, response.text)
    assert response.status_code not in (401, 403), where
    if response.status_code == 503:
        assert response.json()["error"] == "NoCapacityError", where
    else:
        assert response.status_code < 500, where
    assert KEYED_APP.state.service.unexpected_errors == 0, "an exception reached the catch-all"


@keyed_schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_without_a_key_only_401(case):
    dropped = ("authorization", "x-api-key")
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in dropped}
    response = case.call()
    if case.path == "/health":
        assert response.status_code in (200, 405), response.text  # public
        return
    assert response.status_code == 401, (case.method, case.path, response.text)
    assert response.json() == {"detail": "authentication required", "error": "Unauthorized"}
