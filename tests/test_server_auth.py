"""API keys and roles: every route of the app's table (so a new endpoint is covered the day it
is added) answers 401 without a key, 403 with a key lacking its role and 2xx with the right
one; the key file format; constant-time comparison by construction; the dashboard's login
cookie; ``modelrouter serve`` refusing a public bind without keys."""

from __future__ import annotations

import hashlib
import json

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx")

from fastapi import Request, WebSocket  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from modelrouter import cli, server_auth  # noqa: E402
from modelrouter.errors import InvalidInputError  # noqa: E402
from modelrouter.server import PREFIX, create_app  # noqa: E402
from modelrouter.server_auth import (  # noqa: E402
    COOKIE,
    CSP,
    ApiKeys,
    api_keys_from_env,
    is_loopback,
    parse_api_keys,
    route_role,
)
from modelrouter.types import SCENARIO_DIR  # noqa: E402

SEED = json.loads((SCENARIO_DIR / "seed_assign.json").read_text())
KEY = {
    "admin": "adm-0123456789abcdef-secret",
    "route": "rte-0123456789abcdef-secret",
    "report": "rpt-0123456789abcdef-secret",
    "both": "bth-0123456789abcdef-secret",
}
KEY_FILE = f"""
# id   roles         key
ops    admin         sha256:{hashlib.sha256(KEY["admin"].encode()).hexdigest()}
svc    route         {KEY["route"]}
mon    report        {KEY["report"]}   # a trailing comment
both   route,report  {KEY["both"]}
"""
PUBLIC = {"/health"}
CODER = {"id": "coder", "required": {"code": 0.8}}
# One request per (method, path) of the route table that the right key gets a 2xx for.
EXAMPLES: dict[tuple[str, str], dict] = {
    ("POST", f"{PREFIX}/auto-assign-all"): {
        "json": {"agents": SEED["agents"], "models": SEED["models"]}
    },
    ("GET", f"{PREFIX}/assignments"): {},
    ("POST", f"{PREFIX}/route"): {"json": {"agent": CODER}},
    ("POST", f"{PREFIX}/feedback"): {"json": {"model_id": "model-A", "latency_ms": 12.0}},
    ("GET", f"{PREFIX}/stats"): {},
    ("GET", f"{PREFIX}/alerts"): {},
    ("GET", f"{PREFIX}/history"): {},
    ("GET", f"{PREFIX}/health"): {},
    ("GET", "/metrics"): {},
    ("GET", "/"): {},
    ("GET", "/openapi.json"): {},
    ("GET", "/docs"): {},
    ("GET", "/docs/oauth2-redirect"): {},
    ("GET", "/redoc"): {},
    ("GET", "/static"): {"path": "/static/app.js"},
}


def make_app(**kw):
    return create_app(sample_interval_s=3600, api_keys=parse_api_keys(KEY_FILE), **kw)


def route_table():
    """(method, path, role) of every route of the app, the static mount included."""
    out = []
    for r in make_app().routes:
        methods = sorted(getattr(r, "methods", None) or {"GET"})
        for method in methods:
            if method == "HEAD":
                continue
            out.append((method, r.path, route_role(r) or server_auth.DEFAULT_ROLE))
    return out


ROUTES = route_table()


@pytest.fixture(scope="module")
def client():
    with TestClient(make_app()) as c:
        yield c


def call(client, method, path, key=None, **extra):
    example = dict(EXAMPLES[(method, path)])
    url = example.pop("path", path)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.request(method, url, headers=headers, follow_redirects=False, **example)


def wrong_key(role):
    return {"admin": KEY["both"], "route": KEY["report"], "report": KEY["route"]}[role]


def test_every_route_has_an_example_and_a_declared_role():
    missing = [(m, p) for m, p, _ in ROUTES if (m, p) not in EXAMPLES and p not in PUBLIC]
    assert not missing, f"add an example (and a role, requires(...)) for {missing}"
    declared = {p for m, p, _ in ROUTES}
    assert f"{PREFIX}/route" in declared and "/health" in declared


@pytest.mark.parametrize(("method", "path", "role"), ROUTES)
def test_route_without_key_is_401(client, method, path, role):
    if path in PUBLIC:
        assert client.request(method, path).status_code == 200
        return
    r = call(client, method, path)
    if (method, path) == ("GET", "/"):  # the browser is sent to the login form
        assert r.status_code == 303 and r.headers["location"] == "/login"
        return
    assert r.status_code == 401, r.text
    assert r.json() == server_auth.UNAUTHORIZED
    assert r.headers["www-authenticate"] == "Bearer"
    # An unknown key and a malformed header get exactly the same answer.
    for headers in ({"Authorization": "Bearer nope-nope-nope-nope"}, {"X-API-Key": ""},
                    {"Authorization": "Basic Zm9vOmJhcg=="}):  # fmt: skip
        r2 = client.request(method, EXAMPLES[(method, path)].get("path", path), headers=headers)
        assert (r2.status_code, r2.json()) == (401, server_auth.UNAUTHORIZED)


@pytest.mark.parametrize(("method", "path", "role"), ROUTES)
def test_route_with_wrong_role_is_403(client, method, path, role):
    if path in PUBLIC:
        return
    r = call(client, method, path, wrong_key(role))
    assert r.status_code == 403, r.text
    assert r.json() == server_auth.FORBIDDEN


@pytest.mark.parametrize(("method", "path", "role"), ROUTES)
def test_route_with_right_role_is_2xx(client, method, path, role):
    if path in PUBLIC:
        return
    keys = [KEY[role], KEY["admin"]] if role != "admin" else [KEY["admin"]]
    for key in keys:  # the role's own key, and admin, which may do everything
        r = call(client, method, path, key)
        assert 200 <= r.status_code < 300, (key, r.status_code, r.text)
    # X-API-Key works as well as Authorization: Bearer.
    example = dict(EXAMPLES[(method, path)])
    url = example.pop("path", path)
    r = client.request(method, url, headers={"X-API-Key": KEY["admin"]}, **example)
    assert 200 <= r.status_code < 300


def test_roles_of_the_seed_endpoints():
    roles = {(m, p): role for m, p, role in ROUTES}
    assert roles[("POST", f"{PREFIX}/route")] == "route"
    assert roles[("POST", f"{PREFIX}/feedback")] == "report"
    for path in ("auto-assign-all", "assignments", "stats", "alerts", "history", "health"):
        assert "admin" in {role for (m, p), role in roles.items() if p == f"{PREFIX}/{path}"}


def test_unknown_path_needs_a_key_before_it_is_a_404(client):
    assert client.get("/nope").status_code == 401
    assert client.get("/nope", headers={"X-API-Key": KEY["route"]}).status_code == 403
    assert client.get("/nope", headers={"X-API-Key": KEY["admin"]}).status_code == 404


def test_refused_before_the_body_is_read():
    """A 401 comes before the body limit: nobody without a key makes the service buffer."""
    app = make_app(max_body_bytes=100)
    with TestClient(app) as c:
        big = {"agent": {"id": "x" * 500}}
        assert c.post(f"{PREFIX}/route", json=big).status_code == 401
        r = c.post(f"{PREFIX}/route", json=big, headers={"X-API-Key": KEY["route"]})
        assert r.status_code == 413


def test_public_metrics_and_health():
    with TestClient(make_app(public_metrics=True)) as c:
        assert c.get("/metrics").status_code == 200
        assert c.get("/health").status_code == 200
        assert c.get(f"{PREFIX}/stats").status_code == 401


def test_handlers_see_the_key_id():
    app = make_app()

    @app.get("/whoami", openapi_extra=server_auth.requires("route"))
    async def whoami(request: Request) -> dict:
        return {"id": server_auth.request_key_id(request)}

    with TestClient(app) as c:
        assert c.get("/whoami", headers={"X-API-Key": KEY["both"]}).json() == {"id": "both"}
        assert c.get("/whoami", headers={"X-API-Key": KEY["report"]}).status_code == 403
    # Without keys the service is open and the id is None.
    app = create_app(sample_interval_s=3600)

    @app.get("/whoami")
    async def whoami_open(request: Request) -> dict:
        return {"id": server_auth.request_key_id(request)}

    with TestClient(app) as c:
        assert c.get("/whoami").json() == {"id": None}


def test_openapi_declares_the_schemes_and_roles(client):
    spec = client.get("/openapi.json", headers={"X-API-Key": KEY["admin"]}).json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "api_key"}
    op = spec["paths"][f"{PREFIX}/route"]["post"]
    assert op["x-role"] == "route" and op["security"]
    open_spec = create_app(sample_interval_s=3600).openapi()
    assert "security" not in open_spec["paths"][f"{PREFIX}/route"]["post"]


# -- constant time, by construction ---------------------------------------------------------------


@pytest.mark.parametrize(
    "presented",
    [KEY["admin"], KEY["admin"][:-1] + "X", KEY["admin"][:3], "", None, "x" * 10_000, b"\xff"],
)
def test_comparison_touches_every_key_with_fixed_length_digests(monkeypatch, presented):
    """Whatever is presented (the right key, one differing in its last character, a prefix,
    nothing, something huge), ``authenticate`` makes the same calls: one compare_digest per
    configured key, each on two 32-byte digests, with no early exit. So its timing cannot
    depend on how long a prefix matched."""
    keys = parse_api_keys(KEY_FILE)
    calls = []
    real = server_auth.hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(server_auth.hmac, "compare_digest", spy)
    found = keys.authenticate(presented)
    assert calls == [(32, 32)] * len(keys)
    assert (found is not None) == (presented == KEY["admin"])


# -- key file format ------------------------------------------------------------------------------


def test_key_file_parses_ids_roles_and_hashes():
    keys = parse_api_keys(KEY_FILE)
    assert [(k.id, sorted(k.roles)) for k in keys.keys] == [
        ("ops", ["admin"]), ("svc", ["route"]), ("mon", ["report"]),
        ("both", ["report", "route"]),
    ]  # fmt: skip
    assert keys.authenticate(KEY["admin"]).id == "ops"
    assert keys.authenticate(KEY["both"]).allows("route")
    assert not keys.authenticate(KEY["both"]).allows("admin")
    assert keys.authenticate("sha256:" + hashlib.sha256(KEY["admin"].encode()).hexdigest()) is None
    for text in (repr(keys), repr(keys.keys)):
        assert not any(v in text for v in KEY.values())
        assert hashlib.sha256(KEY["route"].encode()).hexdigest() not in text
    inline = parse_api_keys(f"a route {KEY['route']}; b admin {KEY['admin']}")
    assert inline.authenticate(KEY["admin"]).id == "b"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("ops admin", "got 2 fields"),
        ("ops admin,god 0123456789abcdef0", "god"),
        ("ops admin short", "16 to"),
        ("o/p admin 0123456789abcdef0", "id must"),
        (f"a admin {KEY['admin']}\na route {KEY['route']}", "unique"),
        (f"a admin {KEY['admin']}\nb route {KEY['admin']}", "same key"),
        ("# nothing", "no key"),
    ],
)
def test_bad_key_files_name_the_entry_never_the_key(text, needle):
    with pytest.raises(InvalidInputError, match=needle) as info:
        parse_api_keys(text, "keys.txt")
    assert "keys.txt" in str(info.value) or needle in ("unique", "same key")
    assert KEY["admin"] not in str(info.value) and "short" not in str(info.value)


def test_keys_from_env(tmp_path):
    path = tmp_path / "keys"
    path.write_text(KEY_FILE)
    assert len(api_keys_from_env({"MODELROUTER_API_KEYS_FILE": str(path)})) == 4
    assert len(api_keys_from_env({"MODELROUTER_API_KEYS": f"x route {KEY['route']}"})) == 1
    assert api_keys_from_env({}) is None
    with pytest.raises(InvalidInputError, match="not both"):
        api_keys_from_env({"MODELROUTER_API_KEYS_FILE": "f", "MODELROUTER_API_KEYS": "x"})
    app = create_app(sample_interval_s=3600, api_keys=path)  # a path works too
    assert isinstance(app.state.api_keys, ApiKeys)


# -- dashboard ------------------------------------------------------------------------------------


def test_dashboard_login_sets_an_httponly_cookie_for_admin_keys_only():
    with TestClient(make_app()) as c:
        form = c.get("/login")
        assert form.status_code == 200 and 'action="/login"' in form.text
        assert form.headers["content-security-policy"] == CSP
        assert "<script" not in form.text
        r = c.post("/login", data={"key": KEY["route"]}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?failed=1"
        assert COOKIE not in r.headers.get("set-cookie", "")
        assert "unknown or not an admin" in c.get("/login?failed=1").text
        r = c.post("/login", data={"key": KEY["admin"]}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert KEY["admin"] not in cookie  # hex-encoded, never echoed verbatim in a header
        page = c.get("/", follow_redirects=False)  # the client keeps the cookie
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CSP
        assert c.get(f"{PREFIX}/stats").status_code == 200
        # The cookie is good for reading only: a cross-site form cannot post with it.
        assert c.post(f"{PREFIX}/route", json={"agent": CODER}).status_code == 401


def test_dashboard_assets_are_first_party_without_inline_code():
    from modelrouter.server import DASHBOARD_DIR

    for page in ("index.html", "login.html"):
        html = (DASHBOARD_DIR / page).read_text()
        assert "<script>" not in html and " on" + "click=" not in html
        assert "http://" not in html and "https://" not in html
    assert "https://" not in (DASHBOARD_DIR / "app.js").read_text()


# -- serve ----------------------------------------------------------------------------------------


def test_is_loopback():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.com"):
        assert not is_loopback(host)


@pytest.fixture
def served(monkeypatch):
    runs = []
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append((app, kw)))
    monkeypatch.delenv("MODELROUTER_API_KEYS", raising=False)
    monkeypatch.delenv("MODELROUTER_API_KEYS_FILE", raising=False)
    return runs


def test_serve_refuses_a_public_bind_without_keys(served, capsys, tmp_path):
    assert cli.main(["serve", "--host", "0.0.0.0", "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without API keys" in err and "--insecure" in err
    assert served == []
    assert cli.main(["serve", "--host", "0.0.0.0", "--no-store", "--insecure"]) == 0
    assert cli.main(["serve", "--no-store"]) == 0  # loopback without keys: open, as before
    path = tmp_path / "keys"
    path.write_text(KEY_FILE)
    assert cli.main(["serve", "--host", "0.0.0.0", "--no-store", "--api-keys", str(path)]) == 0
    app, kw = served[-1]
    assert kw["host"] == "0.0.0.0" and isinstance(app.state.api_keys, ApiKeys)
    assert [a.state.api_keys for a, _ in served[:2]] == [None, None]


def test_serve_bad_key_file_is_a_clear_error(served, capsys, tmp_path):
    path = tmp_path / "keys"
    path.write_text("ops admin tooshort\n")
    assert cli.main(["serve", "--no-store", "--api-keys", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "16 to" in err and "tooshort" not in err
    assert cli.main(["serve", "--no-store", "--api-keys", str(tmp_path / "none")]) == 2
    assert "cannot read the api key file" in capsys.readouterr().err


def test_the_readme_key_file_example_parses():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("# keys.txt:", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    keys = parse_api_keys(block, "README")
    assert [sorted(k.roles) for k in keys.keys] == [["admin"], ["report", "route"]]
    doc = server_auth.__doc__ or ""
    example = doc.split("key (or sha256:<hex digest of the key>)", 1)[1].split("\n\n", 1)[0]
    assert len(parse_api_keys(example, "docstring")) == 2


def test_app_from_env_reads_the_keys(monkeypatch):
    from modelrouter.server import app_from_env

    monkeypatch.setenv("MODELROUTER_API_KEYS", f"svc route {KEY['route']}")
    monkeypatch.setenv("MODELROUTER_STORE", "")
    monkeypatch.setenv("MODELROUTER_PUBLIC_METRICS", "1")
    with TestClient(app_from_env()) as c:
        route = {"agent": CODER}
        assert c.post(f"{PREFIX}/route", json=route).status_code == 401
        ok = c.post(f"{PREFIX}/route", json=route, headers={"X-API-Key": KEY["route"]})
        assert ok.status_code == 200
        assert c.get("/metrics").status_code == 200
        assert c.get(f"{PREFIX}/stats", headers={"X-API-Key": KEY["route"]}).status_code == 403


def test_roles_are_per_method_and_path():
    """Two routes on one path keep their own roles (whatever their order), and a route with a
    path parameter declares its role like any other."""
    app = make_app()

    @app.get("/thing", openapi_extra=server_auth.requires("admin"))
    async def read_thing() -> dict:
        return {}

    @app.post("/thing", openapi_extra=server_auth.requires("route"))
    async def make_thing() -> dict:
        return {}

    @app.get("/things/{name}", openapi_extra=server_auth.requires("report"))
    async def named(name: str) -> dict:
        return {"name": name}

    with TestClient(app) as c:
        route, report = {"X-API-Key": KEY["route"]}, {"X-API-Key": KEY["report"]}
        assert c.post("/thing", headers=route).status_code == 200
        assert c.get("/thing", headers=route).status_code == 403
        assert c.get("/thing", headers={"X-API-Key": KEY["admin"]}).status_code == 200
        assert c.put("/thing", headers=route).status_code == 403  # no such route: admin's 405
        assert c.get("/things/x", headers=report).json() == {"name": "x"}
        assert c.get("/things/x", headers=route).status_code == 403


def test_refusals_are_counted_in_metrics():
    with TestClient(make_app()) as c:
        for _ in range(3):
            c.get(f"{PREFIX}/stats")
        c.get(f"{PREFIX}/stats", headers={"X-API-Key": KEY["route"]})
        text = c.get("/metrics", headers={"X-API-Key": KEY["admin"]}).text
        assert 'modelrouter_auth_refused_total{status="401"} 3' in text
        assert 'modelrouter_auth_refused_total{status="403"} 1' in text
        assert "# TYPE modelrouter_auth_refused_total counter" in text
    with TestClient(create_app(sample_interval_s=3600)) as c:
        assert "auth_refused" not in c.get("/metrics").text  # open service: no such family


def test_websockets_need_a_key_too():
    app = make_app()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"id": server_auth.request_key_id(websocket)})
        await websocket.close()

    with TestClient(app) as c:
        for headers in ({}, {"X-API-Key": KEY["route"]}):  # no key; not admin (undeclared)
            with pytest.raises(WebSocketDisconnect) as info:
                with c.websocket_connect("/ws", headers=headers) as s:
                    s.receive_json()
            assert info.value.code == 1008
        with c.websocket_connect("/ws", headers={"X-API-Key": KEY["admin"]}) as s:
            assert s.receive_json() == {"id": "ops"}
