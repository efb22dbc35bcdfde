"""Planted secrets never leak: a Redis password (shared-load backend URL), a PostgreSQL
password (store DSN) and an API key are planted, the service and CLI are driven through their
paths — success, bad input, an unreachable backend, an unreachable or refusing database — and
every output channel is searched: HTTP responses (bodies and headers, /metrics and the OpenAPI
document included), log records of every logger, exception messages and tracebacks, reprs,
and the CLI's stdout/stderr."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

import modelrouter as mr  # noqa: E402
from modelrouter import _redact, cli  # noqa: E402
from modelrouter.server import PREFIX, create_app  # noqa: E402
from modelrouter.server_auth import parse_api_keys  # noqa: E402
from modelrouter.store import StoreError, open_store  # noqa: E402

REDIS_PW = "redisPlantedSecret91"
PG_PW = "pgPlantedSecret73"
API_KEY = "apikeyPlantedSecret5531xyz"
SECRETS = (REDIS_PW, PG_PW, API_KEY)
DEAD_REDIS = f"redis://acl-user:{REDIS_PW}@127.0.0.1:1/0"
DEAD_PG = f"postgresql://mr:{PG_PW}@127.0.0.1:1/routing?sslmode=require"


class Channels:
    """Everything that was output, gathered for one search."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, value: object) -> None:
        self.texts.append((where, value if isinstance(value, str) else repr(value)))

    def add_exc(self, where: str, exc: BaseException) -> None:
        self.add(f"{where}: str", str(exc))
        self.add(f"{where}: traceback", "".join(traceback.format_exception(exc)))

    def add_response(self, where: str, r: object) -> None:
        self.add(f"{where}: body", r.text)  # type: ignore[attr-defined]
        self.add(f"{where}: headers", str(dict(r.headers)))  # type: ignore[attr-defined]

    def assert_clean(self) -> None:
        assert self.texts
        leaks = [(w, s) for w, t in self.texts for s in SECRETS if s in t]
        assert not leaks, leaks


@pytest.fixture
def channels(caplog: pytest.LogCaptureFixture) -> Iterator[Channels]:
    caplog.set_level(logging.DEBUG)
    ch = Channels()
    yield ch
    for rec in caplog.records:
        ch.add(f"log {rec.name}", rec.getMessage())
        if rec.exc_info and rec.exc_info[1] is not None:
            ch.add_exc(f"log {rec.name} exc", rec.exc_info[1])
    ch.add("caplog text", caplog.text)
    ch.assert_clean()


def test_the_service_never_shows_a_planted_secret(channels: Channels) -> None:
    keys = parse_api_keys(f"ops admin {API_KEY}")
    app = create_app(sample_interval_s=3600, load_backend=DEAD_REDIS, api_keys=keys)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(app) as c:
        calls = [
            ("POST", f"{PREFIX}/route", {"agent": {"id": "coder", "required": {"code": 0.5}}}),
            ("POST", f"{PREFIX}/route", {"agent": {"id": "x", "required": {"nope": 2}}}),
            (
                "POST",
                f"{PREFIX}/route",
                {"agent": {"id": "r", "required": {"code": 0.5}}, "reserve": True},
            ),  # fmt: skip
            ("POST", f"{PREFIX}/feedback", {"model_id": "model-A", "latency_ms": 5}),
            ("POST", f"{PREFIX}/feedback", {"model_id": "nope", "request_id": "zz"}),
            ("GET", f"{PREFIX}/stats", None),
            ("GET", f"{PREFIX}/health", None),
            ("GET", f"{PREFIX}/alerts", None),
            ("GET", f"{PREFIX}/history", None),
            ("GET", f"{PREFIX}/assignments", None),
            ("GET", "/metrics", None),
            ("GET", "/openapi.json", None),
            ("GET", "/health", None),
            ("GET", "/", None),
        ]
        for method, path, body in calls:
            for headers in (auth, {}, {"X-API-Key": API_KEY[:-1]}):
                r = c.request(method, path, json=body, headers=headers)
                channels.add_response(f"{method} {path}", r)
                assert r.status_code < 500 or r.status_code == 503, r.text
        r = c.post("/login", data={"key": API_KEY}, follow_redirects=False)
        assert r.status_code == 303
        # The cookie carries the key hex-encoded (HttpOnly), never verbatim.
        channels.add_response("POST /login", r)
        app.state.service.sample()
        tracker = app.state.service.router.load_tracker
        status = tracker.backend_status()
        assert status is not None and status["last_error"]  # the dead backend was tried
        for name, value in (
            ("tracker", tracker),
            ("tracker.backend", tracker.backend),
            ("backend_status", status),
            ("router", app.state.service.router),
            ("keys", app.state.api_keys),
            ("key entries", app.state.api_keys.keys),
        ):
            channels.add(name, value)
        assert "***" in tracker.backend


def test_store_and_backend_errors_never_show_the_password(channels: Channels) -> None:
    for url in (DEAD_PG, f"postgresql://mr:{PG_PW}@127.0.0.1:1", f"mysql://mr:{PG_PW}@h/db",
                f"host=127.0.0.1 port=1 password={PG_PW}"):  # fmt: skip
        with pytest.raises((StoreError, mr.InvalidInputError)) as info:
            open_store(url)
        channels.add_exc(url.split(":")[0], info.value)
        assert "***" in str(info.value) or "scheme" in str(info.value), str(info.value)
    for url in (f"rediss://u:{REDIS_PW}@127.0.0.1:1/0?ssl_ca_certs=/nonexistent.pem",
                f"redis://u:{REDIS_PW}@127.0.0.1:1/0?ssl_ca_certs=/x.pem",
                f"http://u:{REDIS_PW}@127.0.0.1:1"):  # fmt: skip
        with pytest.raises(mr.InvalidInputError) as info2:
            mr.LoadTracker(backend=url)
        channels.add_exc("backend", info2.value)
    dead = mr.LoadTracker(backend=DEAD_REDIS, fail_mode="closed", timeout_s=0.2)
    with pytest.raises(mr.BackendUnavailableError) as info3:
        mr.Router([mr.Model("m", {"c": 0.9})], load=dead).request(mr.Agent("a", {"c": 0.5}))
    channels.add_exc("backend unavailable", info3.value)
    channels.add("dead status", dead.backend_status())


def test_cli_never_prints_a_planted_secret(
    channels: Channels, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setenv("MODELROUTER_API_KEYS", f"ops admin {API_KEY}")
    runs = [
        ["serve", "--store", DEAD_PG],
        ["serve", "--no-store", "--load-backend", f"redis://u:{REDIS_PW}@h:1/0?ssl_x=1"],
        ["serve", "--no-store", "--load-backend", DEAD_REDIS],  # starts: fail-open backend
    ]
    codes = []
    for argv in runs:
        codes.append(cli.main(argv))
        out = capsys.readouterr()
        channels.add(f"{argv} stdout", out.out)
        channels.add(f"{argv} stderr", out.err)
        if codes[-1]:
            assert "***" in out.err, out.err
    assert codes == [2, 2, 0]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://u:pw@h:5/db?sslmode=require", "postgresql://u:***@h:5/db?sslmode=require"),
        ("redis://:p@ss@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://user:p%40ss@h:1/0?ssl_ca_certs=/ca.pem", "rediss://user:***@h:1/0?ssl_ca_certs=/ca.pem"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("host=h password='a b' dbname=x", "host=h password=*** dbname=x"),
        ("postgresql://h/db?password=zz&sslmode=require", "postgresql://h/db?password=***&sslmode=require"),
        ("on 'postgresql://u:pw@h/db': no", "on 'postgresql://u:***@h/db': no"),
    ],
)  # fmt: skip
def test_redact(text: str, shown: str) -> None:
    assert _redact.redact(text) == shown


def test_postgres_sslmode_passes_through_and_the_password_stays_hidden(
    channels: Channels, postgres_admin_url: str
) -> None:
    """libpq gets the URL's options unchanged: ``sslmode=disable`` connects to the test server
    (which has no TLS), ``sslmode=require`` is refused by libpq itself — so the option reached
    it — with the password masked in the error and the store's repr."""
    pytest.importorskip("psycopg")
    from modelrouter.testing import postgres

    with postgres.database(postgres_admin_url) as db_url:
        with_password = db_url.replace("postgresql://postgres@", f"postgresql://postgres:{PG_PW}@")
        assert PG_PW in with_password  # trust auth: any password is accepted
        with open_store(f"{with_password}?sslmode=disable") as store:
            store.record_route("a", "m", "weighted")
            store.flush()
            channels.add("store repr", store)
            assert "***" in repr(store)
        with pytest.raises(StoreError, match="SSL") as info:
            open_store(f"{with_password}?sslmode=require")
        channels.add_exc("sslmode=require", info.value)
        assert "sslmode=require" in str(info.value) and "***" in str(info.value)
