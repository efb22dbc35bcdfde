"""REST service and dashboard (``pip install 'modelrouter[server]'``; ``modelrouter serve``).

Endpoints under ``/api/v1/model-router``: POST ``auto-assign-all`` (agents and models in the
body, like the seeds), POST ``route`` and ``feedback`` (against the fleet configured at start),
GET ``assignments``, ``stats``, ``health`` (per model: ejected, cooling down...), ``alerts`` and
``history``; plus ``/health``, ``/metrics``
(Prometheus text) and the dashboard at ``/``. Every error is a JSON 4xx (``RouterError``
subclasses mapped by kind, 422 bodies naming the field, 413 for a body over the limit) or 503
with ``Retry-After``; unexpected exceptions are logged, answered 500 and counted in
``app.state.service.unexpected_errors``. Heavy work (a batch body's decoding, validation and
solve) runs in the thread pool, never on the event loop. With API keys (``create_app(api_keys=
...)``, ``modelrouter.server_auth``) every route but ``/health`` needs a key with its role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, server_batch
from ._core import AlertRule, Model
from .errors import InvalidInputError, RouterError
from .server_auth import (
    PAGE_HEADERS,
    SECURITY_SCHEMES,
    ApiKeyAuth,
    ApiKeys,
    api_keys_from_env,
    load_api_keys,
    refused_metrics,
    requires,
)
from .server_errors import error_body, error_response, field_error, too_large, validation_error
from .server_fast import FastRoute, route_decision
from .server_quotas import KeyQuotas
from .server_schemas import (
    AlertsResponse,
    AssignmentsResponse,
    AutoAssignRequest,
    AutoAssignResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    HistoryResponse,
    ModelsHealthResponse,
    RouteRequest,
    RouteResponse,
    StatsResponse,
)
from .server_state import ServiceState, alert_dicts
from .store import DecisionStore, open_store
from .types import load_fleet

log = logging.getLogger("modelrouter.server")
PREFIX = "/api/v1/model-router"
# Largest request body accepted (413 above): a 10,000-agent batch with a dozen capabilities per
# agent is ~3 MB, so 16 MiB leaves room for rich profiles while bounding what one request may
# make the service buffer and decode.
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
MAX_BODY_ENV = "MODELROUTER_MAX_BODY_BYTES"
DASHBOARD_DIR = Path(__file__).with_name("dashboard")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (404, "Unknown model or request id"),
        (409, "No model can serve the agent (infeasible)"),
        (503, "Every eligible model is full; see Retry-After"),
    )
}


def _install_error_handlers(app: FastAPI, state: ServiceState) -> None:
    @app.exception_handler(RequestValidationError)
    async def bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI turns a body nested beyond json's recursion limit into a bare 400; answer it
        # like every other undecodable body (auto-assign-all, the fast route path): a 422.
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            error = {"loc": (), "msg": "Invalid JSON: nested too deeply", "type": "json_invalid"}
            return validation_error([error], prefix=("body",))
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, state, f"{request.method} {request.url.path}")

    # Every RouterError (bad input, unknown id, no capacity, store) through the same mapping
    # in the exception middleware; the Exception handler above is the last resort.
    app.add_exception_handler(RouterError, any_error)  # type: ignore[arg-type]


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request whose body exceeds ``limit`` bytes is answered 413 (with the
    limit in the message), by its Content-Length before any of it is read, or as soon as a
    streamed (chunked) body passes the limit. Whatever the app was about to answer for such
    a body is dropped in favour of the 413."""

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                await too_large(self.limit, int(value))(scope, receive, send)
                return
        seen = 0
        exceeded = started = False

        async def limited() -> Any:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def guarded(message: Any) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a truncated body (400, 422...): we send the 413
            started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await too_large(self.limit)(scope, receive, send)


def check_body_limit(value: Any, field: str = "max_body_bytes") -> int:
    """A body limit in bytes (an int >= 1; from text, digits only)."""
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text.isdigit():
            raise InvalidInputError(f"{field} must be a number of bytes, got {value!r}", field)
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{field} must be an int >= 1 (bytes), got {value!r}", field)
    return value


def body_limit_from_env() -> int:
    """``$MODELROUTER_MAX_BODY_BYTES``, else ``DEFAULT_MAX_BODY_BYTES``."""
    value = os.environ.get(MAX_BODY_ENV, "").strip()
    return check_body_limit(value, MAX_BODY_ENV) if value else DEFAULT_MAX_BODY_BYTES


async def _sampler(state: ServiceState, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            state.sample()
        except Exception:  # keep sampling whatever one tick did
            log.exception("sampling failed")


DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_drain_handlers(state: ServiceState) -> Callable[[], None]:
    """Makes SIGTERM and SIGINT first put the service in draining mode, then run the handler
    that was there before (uvicorn's: stop listening, finish the requests in progress, run the
    lifespan shutdown, which commits the decision store). While draining, every request that
    would record a decision is answered 503 with ``Retry-After`` and ``Connection: close``
    before anything is reserved or recorded, so nothing is acknowledged that the shutdown
    might not commit. Returns the function restoring the previous handlers. Only from the
    main thread (elsewhere, e.g. under the TestClient, it installs nothing)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def drain(signum: int, frame: FrameType | None) -> None:
        # Takes no lock (no logging here): it runs between two bytecodes of the main thread.
        state.draining = True
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        elif before == signal.SIG_DFL:  # the default action: die by the same signal
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in DRAIN_SIGNALS:
        previous[signum] = signal.signal(signum, drain)

    def restore() -> None:
        for signum, before in previous.items():
            if signal.getsignal(signum) is drain and before is not None:
                signal.signal(signum, before)

    return restore


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory modelrouter.server:app_from_env`` (one app per worker):
    MODELROUTER_FLEET, MODELROUTER_STORE (a store URL, or empty for none), MODELROUTER_POLICY,
    MODELROUTER_STRATEGY, MODELROUTER_LOAD_BACKEND (``redis://...`` or ``redis+cluster://...``,
    shared by the workers), MODELROUTER_MAX_BODY_BYTES (default 16 MiB), MODELROUTER_API_KEYS
    or MODELROUTER_API_KEYS_FILE (see ``modelrouter.server_auth``; unset: no authentication),
    MODELROUTER_PUBLIC_METRICS=1 (``/metrics`` without a key), MODELROUTER_UPSTREAMS (the
    gateway's upstreams file)."""
    env = os.environ
    return create_app(
        fleet=env.get("MODELROUTER_FLEET") or None,
        store_url=env.get("MODELROUTER_STORE") or None,
        policy=env.get("MODELROUTER_POLICY", "weighted"),
        strategy=env.get("MODELROUTER_STRATEGY", "optimal"),
        load_backend=env.get("MODELROUTER_LOAD_BACKEND") or None,
        max_body_bytes=body_limit_from_env(),
        upstreams=env.get("MODELROUTER_UPSTREAMS") or None,
        api_keys=api_keys_from_env(),
        public_metrics=env.get("MODELROUTER_PUBLIC_METRICS", "") in ("1", "true", "yes"),
    )


def create_app(
    models: Sequence[Model] | None = None,
    *,
    fleet: str | None = None,
    strategy: str = "optimal",
    policy: str = "weighted",
    load_weight: float = 0.5,
    store_url: str | None = None,
    store: DecisionStore | None = None,
    alert_rules: Sequence[AlertRule] | None = None,
    alert_cooldown_s: float = 300.0,
    sample_interval_s: float = 2.0,
    reservation_ttl_s: float = 300.0,
    load_backend: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    upstreams: str | Path | None = None,
    api_keys: ApiKeys | str | os.PathLike[str] | None = None,
    public_metrics: bool = False,
) -> FastAPI:
    """The ASGI app. ``models`` (or the ``fleet`` file, default the shipped ``seed_assign``
    scenario) is the fleet POST route/feedback use; ``store`` (or ``store_url``, opened with
    :func:`modelrouter.store.open_store`) records every decision and is closed on shutdown.
    ``load_backend`` (``redis://...`` or ``redis+cluster://...``) shares the active/queued
    counts, and so the limits, with every other process given the same URL (uvicorn workers,
    replicas). A request body over ``max_body_bytes`` is answered 413.

    ``api_keys`` (``ApiKeys`` or a key file path, see ``modelrouter.server_auth``) turns on
    authentication: every endpoint but ``/health`` (and ``/metrics`` with ``public_metrics``)
    needs a key with the route's role. Without keys the service is open, as it must then only
    listen on loopback (``modelrouter serve`` enforces that).

    ``upstreams`` (a JSON file, see :mod:`modelrouter.server_gateway`) adds the
    OpenAI-compatible gateway under ``/v1``: its calls need the ``route`` role."""
    max_body_bytes = check_body_limit(max_body_bytes)
    if api_keys is not None and not isinstance(api_keys, ApiKeys):
        api_keys = load_api_keys(api_keys)
    if models is None:
        models = load_fleet(fleet or "seed_assign")[1]
    if store is None and store_url is not None:
        store = open_store(store_url)
    state = ServiceState(
        models,
        strategy=strategy,
        policy=policy,
        load_weight=load_weight,
        store=store,
        alert_rules=alert_rules,
        alert_cooldown_s=alert_cooldown_s,
        reservation_ttl_s=reservation_ttl_s,
        load_backend=load_backend,
    )

    gateway = None  # read before the app exists: a bad file fails create_app, not a call
    if upstreams is not None:
        from .server_gateway import Gateway, Upstreams

        known = {m.id for m in state.router.models}
        gateway = Gateway(state, Upstreams.from_file(upstreams, known))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # After the server's own handlers (uvicorn installs them before the lifespan starts).
        restore_signals = install_drain_handlers(state)
        state.draining = False  # the same app may be started again (tests do)
        if gateway is not None:
            gateway.open()
        state.sample()
        task = asyncio.create_task(_sampler(state, sample_interval_s))
        try:
            yield
        finally:
            if state.draining:
                log.info("draining: new decisions were refused (503) since the signal")
            state.draining = True  # whatever still arrives is refused, not half-recorded
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if gateway is not None:
                await gateway.close()
            if state.store is not None:
                # Commits every acknowledged row; off the loop, which may still answer 503s.
                await run_in_threadpool(state.store.close)
            restore_signals()

    app = FastAPI(
        title="modelrouter",
        version=__version__,
        description="Capability-, load- and performance-aware routing of agents to LLMs.",
        lifespan=lifespan,
    )
    app.state.service = state
    _install_error_handlers(app, state)
    app.add_middleware(FastRoute, state=state, path=f"{PREFIX}/route")
    if gateway is not None:
        from .server_gateway import GatewayFastPath, add_gateway

        app.add_middleware(GatewayFastPath, gateway=gateway)
        add_gateway(app, gateway)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.state.auth_refused = Counter()  # 401s and 403s, for /metrics
    quotas = KeyQuotas(api_keys.keys) if api_keys is not None else None
    app.state.key_quotas = quotas
    if gateway is not None:
        gateway.quotas = quotas
    if api_keys is not None:
        # Added last, so the outermost: no body is read for a request refused 401/403.
        public = ("/health", "/static/login.css")  # the login form's style too
        public += ("/metrics",) if public_metrics else ()
        app.add_middleware(
            ApiKeyAuth, keys=api_keys, routes=lambda: app.routes, public=public,
            login_page=_login_page, refused=app.state.auth_refused, quotas=quotas,
        )  # fmt: skip
    app.state.api_keys = api_keys
    app.state.max_body_bytes = max_body_bytes
    _add_api(app, state)
    _document_auto_assign_body(app, authenticated=api_keys is not None)
    _add_ops(app, state)
    return app


def _auto_assign(state: ServiceState, raw: bytes) -> tuple[JSONResponse, dict[str, Any]]:
    """POST auto-assign-all in a worker thread: decode and validate the body piecewise, solve,
    record, render. Returns the response and the summary kept in memory."""
    try:
        body = server_batch.validate(server_batch.decode_json(raw))
    except server_batch.BodyError as e:
        return validation_error(e.errors, prefix=("body",)), {}
    result = server_batch.solve(body)
    ts = time.time()
    if state.store is not None:
        state.check_can_decide()  # SIGTERM may have come during the solve
        state.store.record_assignment(server_batch.request_dict(body), result, ts=ts)
    return JSONResponse(result), {"ts": ts, **server_batch.summary(body, result, len(raw))}


def _login_page(failed: bool) -> HTMLResponse:
    html = (DASHBOARD_DIR / "login.html").read_text(encoding="utf-8")
    if failed:
        html = html.replace(
            "<!--failed-->", '<p class="failed">That key is unknown or not an admin key.</p>'
        )
    return HTMLResponse(html, headers=PAGE_HEADERS)


def _document_auto_assign_body(app: FastAPI, authenticated: bool = False) -> None:
    """auto-assign-all reads its body itself (so that FastAPI does not decode it on the event
    loop); its OpenAPI request body still names ``AutoAssignRequest``. With authentication the
    document declares the key schemes; without, the operations' ``security`` is dropped."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            body = AutoAssignRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in body.pop("$defs", {}).items():
                schemas.setdefault(name, schema)
            schemas["AutoAssignRequest"] = body
            if authenticated:
                spec["components"]["securitySchemes"] = SECURITY_SCHEMES
            else:
                for ops in spec.get("paths", {}).values():
                    for op in ops.values():
                        op.pop("security", None)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


_AUTO_ASSIGN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/AutoAssignRequest"}}
        },
    }
}


def _add_api(app: FastAPI, state: ServiceState) -> None:
    @app.post(
        f"{PREFIX}/auto-assign-all",
        response_model=AutoAssignResponse,
        responses={
            413: {"model": ErrorResponse, "description": "Body over the configured limit"},
            422: {"description": "Invalid body"},
            503: {"model": ErrorResponse, "description": "Shutting down or store full"},
        },
        openapi_extra={**_AUTO_ASSIGN_BODY, **requires("admin")},
        tags=["assignment"],
    )
    async def auto_assign_all(request: Request) -> Any:
        """Assigns every agent to a model of the given fleet with the chosen strategy."""
        state.check_can_decide()
        raw = await request.body()
        # Everything heavy (decoding, validation, the solve, recording) in the thread pool, in
        # steps short enough that the event loop keeps its share of the GIL. The longest left
        # is the store's json.dumps of the whole request (about 20 ms per MB).
        response, kept = await run_in_threadpool(_auto_assign, state, raw)
        if kept:
            state.recent_assignments.appendleft(kept)
        return response

    @app.get(
        f"{PREFIX}/assignments",
        response_model=AssignmentsResponse,
        tags=["assignment"],
        openapi_extra=requires("admin"),
    )
    async def assignments(limit: int = Query(20, ge=1, le=1000)) -> dict[str, Any]:
        """Most recent POST auto-assign-all calls first (from the store when there is one)."""
        store = state.store
        if store is not None:

            def read() -> list[dict[str, Any]]:
                store.flush()  # read your own writes: the batch may not be committed yet
                return [dict(r) for r in store.assignments(limit)]

            rows = await run_in_threadpool(read)
        else:
            rows = list(state.recent_assignments)[:limit]
        return {"assignments": rows}

    @app.post(
        f"{PREFIX}/route",
        response_model=RouteResponse,
        responses=_ERRORS,
        tags=["routing"],
        openapi_extra=requires("route"),
    )
    async def route(body: RouteRequest) -> Any:
        """Picks a model of the configured fleet for one request of the agent. With
        ``reserve`` the request takes a slot (or a queue place) until its feedback."""
        return route_decision(state, body)

    @app.post(
        f"{PREFIX}/feedback",
        response_model=FeedbackResponse,
        responses={404: _ERRORS[404]},
        tags=["routing"],
        openapi_extra=requires("report"),
    )
    async def feedback(body: FeedbackRequest) -> Any:
        """Reports a finished request: its latency and how it ended (``outcome``, or
        ``success``); a released reservation reports the outcome to the model's health."""
        outcome = body.outcome_kind()
        state.check_can_decide()  # a 503 leaves the reservation in place: retry the feedback
        released = False
        if body.request_id is not None:
            res = state.reservations.get(body.request_id)
            if res is None or res.flight.model_id != body.model_id:
                what = f"unknown request id {body.request_id!r} for model {body.model_id!r}"
                return error_body(404, KeyError(what), field="request_id")
            del state.reservations[body.request_id]
            latency_ms = (state.now() - res.started) * 1000.0
            if body.outcome is not None and body.outcome != "ok":
                res.flight.fail(body.outcome, body.retry_after_s)  # type: ignore[arg-type]
            if body.ttft_ms is not None:
                res.flight.first_token(body.ttft_ms)
            if body.prompt_tokens is not None or body.completion_tokens is not None:
                res.flight.set_usage(body.prompt_tokens or 0, body.completion_tokens or 0)
            res.flight.release(body.success)
            released = True
        elif body.latency_ms is None:
            return field_error("latency_ms", "latency_ms is required without a request_id")
        else:
            latency_ms = body.latency_ms
            retry = body.retry_after_s if body.outcome == "rate_limited" else None
            state.router.record(
                body.model_id,
                latency_ms,
                body.success,
                body.agent_id,
                outcome=body.outcome,  # type: ignore[arg-type]
                retry_after_s=retry,
            )
        if state.store is not None:
            state.store.record_feedback(
                body.model_id, latency_ms, body.success, body.agent_id, outcome=outcome
            )
        return {
            "model_id": body.model_id,
            "latency_ms": latency_ms,
            "success": body.success,
            "outcome": outcome,
            "released": released,
        }


def _add_ops(app: FastAPI, state: ServiceState) -> None:
    admin = requires("admin")

    @app.get(
        f"{PREFIX}/stats", response_model=StatsResponse, tags=["observability"], openapi_extra=admin
    )
    async def stats() -> dict[str, Any]:
        """Counters, per-model load and latency statistics of the configured fleet."""
        return state.stats()

    @app.get(
        f"{PREFIX}/alerts",
        response_model=AlertsResponse,
        tags=["observability"],
        openapi_extra=admin,
    )
    async def alerts(limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
        """Firing alerts and the most recent notifications (newest last)."""
        return {
            "active": alert_dicts(state.alerts.active(), state.now()),
            "history": alert_dicts(state.alerts.history(limit=limit), state.now()),
        }

    @app.get(
        f"{PREFIX}/history",
        response_model=HistoryResponse,
        tags=["observability"],
        openapi_extra=admin,
    )
    async def history(limit: int = Query(180, ge=1, le=10000)) -> dict[str, Any]:
        """The sampler's recent points (routes so far, latency percentiles, utilization)."""
        return {"samples": list(state.history)[-limit:]}

    @app.get(
        f"{PREFIX}/health",
        response_model=ModelsHealthResponse,
        tags=["observability"],
        openapi_extra=admin,
    )
    async def models_health() -> dict[str, Any]:
        """Each model's health: healthy, ejected (outlier detection), cooling down (rate
        limited until its Retry-After) or probing (one trial request at a time)."""
        models = state.health()
        return {"models": models, "unhealthy": sum(m["state"] != "healthy" for m in models)}

    @app.get("/health", response_model=HealthResponse, tags=["observability"])
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "models": len(state.router.models),
            "store": state.store is not None,
        }

    @app.get(
        "/metrics", response_class=PlainTextResponse, tags=["observability"], openapi_extra=admin
    )
    async def metrics() -> PlainTextResponse:
        """Prometheus text exposition format."""
        text = state.metrics()
        if app.state.api_keys is not None:
            text += refused_metrics(app.state.auth_refused) + app.state.key_quotas.metrics()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False, openapi_extra=admin)
    async def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=DASHBOARD_DIR), name="static")
