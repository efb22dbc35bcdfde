"""How the service answers errors: one mapping from exception to JSON response, shared by the
FastAPI handlers and the fast route path. ``RouterError`` subclasses become 4xx by kind,
``NoCapacityError``, a store that cannot keep up and a service shutting down
(``ServiceUnavailableError``) a 503 with ``Retry-After``; anything
unexpected is a fault of the service: logged with its traceback, counted, and answered 500, so
that it is never mistaken for the client's error."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi.responses import JSONResponse

from .errors import (
    InfeasibleError,
    InvalidInputError,
    NoCapacityError,
    RouterError,
    UnknownModelError,
)
from .server_state import ServiceState, ServiceUnavailableError
from .store import StoreError

log = logging.getLogger("modelrouter.server")

# Most specific first.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (UnknownModelError, 404),
    (InfeasibleError, 409),
    (NoCapacityError, 503),
    (StoreError, 503),
    (ServiceUnavailableError, 503),
    (RouterError, 400),
)


def error_body(status: int, exc: BaseException, **extra: Any) -> JSONResponse:
    body = {"detail": str(exc), "error": type(exc).__name__, **extra}
    headers = None
    if isinstance(exc, (NoCapacityError, StoreError, ServiceUnavailableError)):
        retry = getattr(exc, "retry_after_s", 1.0)
        retry = retry if math.isfinite(retry) and retry > 0 else 1.0
        body["retry_after_s"] = retry
        headers = {"Retry-After": str(max(1, math.ceil(retry)))}
        if getattr(exc, "closing", False):
            headers["Connection"] = "close"  # this process is leaving: reconnect elsewhere
    return JSONResponse(body, status_code=status, headers=headers)


def too_large(limit: int, length: int | None = None) -> JSONResponse:
    """413 for a body over the configured limit (the message says the limit and the knob)."""
    size = "request body" if length is None else f"request body of {length} bytes"
    message = (
        f"{size} exceeds the limit of {limit} bytes (set by create_app(max_body_bytes=...),"
        " modelrouter serve --max-body-bytes or MODELROUTER_MAX_BODY_BYTES)"
    )
    body = {"detail": message, "error": "PayloadTooLarge", "limit_bytes": limit}
    return JSONResponse(body, status_code=413, headers={"Connection": "close"})


def field_error(field: str, message: str) -> JSONResponse:
    """A 422 shaped like FastAPI's own (``loc`` names the field)."""
    loc = ["body", *field.replace("[", ".").replace("]", "").split(".")]
    detail = [{"loc": loc, "msg": message, "type": "value_error"}]
    return JSONResponse({"detail": detail, "error": "InvalidInputError", "field": field}, 422)


def validation_error(errors: Iterable[Mapping[str, Any]], prefix: tuple[str, ...] = ()) -> Any:
    """422 from pydantic errors, keeping only loc/msg/type (the offending input may not be
    JSON-encodable: NaN, bytes); ``field`` is the first error's JSON path (``agent.id``)."""
    detail = [
        {"loc": [*prefix, *e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in errors
    ]
    body: dict[str, Any] = {"detail": detail, "error": "ValidationError"}
    if detail:
        body["field"] = json_path(detail[0]["loc"])
    return JSONResponse(body, 422)


def json_path(loc: Iterable[Any]) -> str:
    """``["body", "agents", 3, "id"]`` -> ``agents[3].id`` (``body`` alone -> ``body``)."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] == "body":
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


def error_response(exc: BaseException, state: ServiceState, where: str = "") -> JSONResponse:
    if isinstance(exc, InvalidInputError):
        return field_error(exc.field or "body", str(exc))
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return error_body(status, exc)
    # A bug of ours, not the client's: a 500 (the body says nothing of the internals), logged
    # with its traceback and counted, so tests and operators see it.
    state.unexpected_errors += 1
    log.error("unexpected error on %s", where, exc_info=exc)
    return JSONResponse({"detail": "internal error", "error": "InternalError"}, 500)
